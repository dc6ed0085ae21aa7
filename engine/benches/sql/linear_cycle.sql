-- The hot path's statements alone, without the engine: one script run
-- creates a linear task, then claims, submits and processes its four
-- steps, each statement one transaction, as the worker and orchestration
-- issue them. For quick interleaved A/B of SQL variants (two copies of a
-- database, one with the change) before the harness. On a database with
-- the linear template registered and both queues empty (a bench database
-- of `tasker-harness run --scenario linear --postgres url`):
--
--   PGOPTIONS="-c synchronous_commit=off" \
--     pgbench -n -M prepared -r -f engine/benches/sql/linear_cycle.sql -t 300 -c 1 <db>
--
-- One client only: each claim must find exactly its task's one message.
-- Asynchronous commit leaves the statements' CPU and the round trips.
-- The step's three statements are written out four times (pgbench has no
-- loop), which also gives each step's processing its own latency line:
-- the last one, which finishes the task, differs.
\set k random(1, 2000000000)
SELECT task_uuid FROM tasker.create_task('linear', 'linear_workflow', '1.0.0', jsonb_build_object('even_number', 2, 'k', :k::bigint), NULL, 0, NULL, NULL, NULL, NULL, '{}') \gset
SELECT msg_id, workflow_step_uuid AS step, claim_token AS tok FROM tasker.claim_worker_linear_queue(5, 16, 'w') \gset
SELECT workflow_step_uuid FROM tasker.submit_worker_linear_queue(jsonb_build_array(jsonb_build_object('step_uuid', :step::text, 'msg_id', :msg_id::bigint, 'claim_token', :tok::text, 'success', true, 'result', 4, 'error', null, 'execution_time_us', 10, 'worker_id', 'w')));
SELECT * FROM tasker.process_step_results(32);
SELECT msg_id, workflow_step_uuid AS step, claim_token AS tok FROM tasker.claim_worker_linear_queue(5, 16, 'w') \gset
SELECT workflow_step_uuid FROM tasker.submit_worker_linear_queue(jsonb_build_array(jsonb_build_object('step_uuid', :step::text, 'msg_id', :msg_id::bigint, 'claim_token', :tok::text, 'success', true, 'result', 4, 'error', null, 'execution_time_us', 10, 'worker_id', 'w')));
SELECT * FROM tasker.process_step_results(32);
SELECT msg_id, workflow_step_uuid AS step, claim_token AS tok FROM tasker.claim_worker_linear_queue(5, 16, 'w') \gset
SELECT workflow_step_uuid FROM tasker.submit_worker_linear_queue(jsonb_build_array(jsonb_build_object('step_uuid', :step::text, 'msg_id', :msg_id::bigint, 'claim_token', :tok::text, 'success', true, 'result', 4, 'error', null, 'execution_time_us', 10, 'worker_id', 'w')));
SELECT * FROM tasker.process_step_results(32);
SELECT msg_id, workflow_step_uuid AS step, claim_token AS tok FROM tasker.claim_worker_linear_queue(5, 16, 'w') \gset
SELECT workflow_step_uuid FROM tasker.submit_worker_linear_queue(jsonb_build_array(jsonb_build_object('step_uuid', :step::text, 'msg_id', :msg_id::bigint, 'claim_token', :tok::text, 'success', true, 'result', 4, 'error', null, 'execution_time_us', 10, 'worker_id', 'w')));
SELECT * FROM tasker.process_step_results(32);
