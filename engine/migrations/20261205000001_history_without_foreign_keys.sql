-- The history tables (task and step transitions, result audit) keep no
-- foreign keys. Only the engine's functions write them, for a task or step
-- they have just updated in the same transaction, and nothing in the
-- engine deletes a task; yet every history row paid a foreign-key check
-- (a lookup and a row lock on its owner): about 30 of a linear task's 41
-- checks, 7% of the database's time a step (pgbench of the hot path's
-- statements, engine/sql/README.md). The cascade they gave is
-- tasker.delete_tasks (sql/retention.sql), which deletes the history with
-- the tasks.
ALTER TABLE tasker.task_transitions
    DROP CONSTRAINT task_transitions_task_uuid_fkey;
ALTER TABLE tasker.workflow_step_transitions
    DROP CONSTRAINT workflow_step_transitions_workflow_step_uuid_fkey;
ALTER TABLE tasker.workflow_step_result_audit
    DROP CONSTRAINT workflow_step_result_audit_workflow_step_uuid_fkey;
