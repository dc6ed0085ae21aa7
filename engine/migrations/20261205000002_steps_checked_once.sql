-- A step row is written four or five times on its way (created, enqueued,
-- claimed, its result recorded, completed), and every one of those
-- UPDATEs paid for checks that only its creation needs:
--
-- - The table's two CHECK constraints (max_attempts >= 1, a known backoff)
--   are evaluated on every UPDATE of the row whatever columns it sets, and
--   PostgreSQL reads their expressions from stored text and plans them
--   again for every statement that writes the table: 8 µs an UPDATE of
--   one step. Domains check the same rules where a value is given to the
--   column (an INSERT, or an UPDATE that sets it), and nowhere else.
-- - The foreign keys between tasks, steps, edges and checkpoints: a lookup
--   and a row lock for each step and edge created, and for every UPDATE of
--   a step the triggers of the keys pointing at it (3 µs). Only the
--   engine's functions write these rows, in the transaction that created
--   or locked their owner; tasker.delete_tasks (sql/retention.sql) deletes
--   a task's steps, edges and checkpoints with it, as the cascades did.
--
-- Together, 9% of the database's time for a linear task (pgbench of
-- engine/benches/sql/linear_cycle.sql, interleaved against the schema
-- before). Like the history tables (migration 20261205000001).
CREATE DOMAIN tasker.attempt_limit AS integer CHECK (VALUE >= 1);
CREATE DOMAIN tasker.backoff_kind AS text CHECK (VALUE IN ('exponential', 'linear', 'fixed'));

ALTER TABLE tasker.workflow_steps
    DROP CONSTRAINT workflow_steps_max_attempts_check,
    DROP CONSTRAINT workflow_steps_backoff_check,
    DROP CONSTRAINT workflow_steps_task_uuid_fkey,
    ALTER COLUMN max_attempts TYPE tasker.attempt_limit,
    ALTER COLUMN backoff TYPE tasker.backoff_kind;
ALTER TABLE tasker.workflow_step_edges
    DROP CONSTRAINT workflow_step_edges_from_step_uuid_fkey,
    DROP CONSTRAINT workflow_step_edges_to_step_uuid_fkey;
ALTER TABLE tasker.workflow_step_checkpoints
    DROP CONSTRAINT workflow_step_checkpoints_workflow_step_uuid_fkey;
