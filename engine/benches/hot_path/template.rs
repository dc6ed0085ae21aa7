//! `template_parse`: `TaskTemplate::from_yaml_str` (parse + validate) of
//! the linear and complex_dag scenario templates (`common::TEMPLATES`).

use std::hint::black_box;

use criterion::{Criterion, Throughput};

use crate::common;

pub(crate) fn template_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("template_parse");
    for name in common::TEMPLATES {
        let (label, text) = common::template_text(name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| common::parse_template(black_box(&label), black_box(&text)))
        });
    }
    group.finish();
}
