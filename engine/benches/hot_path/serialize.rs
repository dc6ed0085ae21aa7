//! `result_serialize`: the JSON a worker submits for a batch of step
//! results, built as the submitter builds it and encoded as sqlx binds it
//! (`build_and_encode/<n>`), and the encoding alone (`encode/16`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};

use crate::common;

pub(crate) fn result_serialize(c: &mut Criterion) {
    let mut group = c.benchmark_group("result_serialize");
    for n in [1, common::RESULT_BATCH] {
        let completions = common::completions(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("build_and_encode", n), |b| {
            b.iter(|| common::serialize_results(black_box(&completions)))
        });
    }
    let batch = common::result_batch_json(&common::completions(common::RESULT_BATCH));
    group.throughput(Throughput::Elements(common::RESULT_BATCH as u64));
    group.bench_function(BenchmarkId::new("encode", common::RESULT_BATCH), |b| {
        b.iter(|| common::encode_jsonb(black_box(&batch)))
    });
    group.finish();
}
