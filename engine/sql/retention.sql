-- A task that has finished: it changes no more but by an operator's
-- hand, and no message of its is on its way. Inlined by the planner.
CREATE OR REPLACE FUNCTION tasker.task_finished(p_state tasker.task_state) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
$$;

-- Deleting finished tasks, with everything that is theirs: their steps,
-- edges, checkpoints and history, which keep no foreign keys (migrations
-- 20261205000001 and 20261205000002) and so are deleted here
-- explicitly, and their dead letters (a foreign key with ON DELETE
-- CASCADE). A task that has not finished (complete, error, cancelled,
-- resolved manually) is left alone: its messages are still on their way.
-- Returns the tasks deleted.
CREATE OR REPLACE FUNCTION tasker.delete_tasks(p_tasks uuid[]) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_tasks uuid[];
    v_steps uuid[];
BEGIN
    -- Locked, so a task cannot be deleted while something else changes it.
    v_tasks := ARRAY(SELECT t.task_uuid FROM tasker.tasks t
                      WHERE t.task_uuid = ANY (p_tasks)
                        AND tasker.task_finished(t.state)
                        FOR UPDATE);
    v_steps := ARRAY(SELECT ws.workflow_step_uuid FROM tasker.workflow_steps ws
                      WHERE ws.task_uuid = ANY (v_tasks));
    DELETE FROM tasker.workflow_step_transitions t WHERE t.workflow_step_uuid = ANY (v_steps);
    DELETE FROM tasker.workflow_step_result_audit a WHERE a.workflow_step_uuid = ANY (v_steps);
    DELETE FROM tasker.workflow_step_checkpoints c WHERE c.workflow_step_uuid = ANY (v_steps);
    -- An edge joins two steps of one task: all of them found by their parent.
    DELETE FROM tasker.workflow_step_edges e WHERE e.from_step_uuid = ANY (v_steps);
    DELETE FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = ANY (v_steps);
    DELETE FROM tasker.task_transitions t WHERE t.task_uuid = ANY (v_tasks);
    RETURN QUERY DELETE FROM tasker.tasks t WHERE t.task_uuid = ANY (v_tasks) RETURNING t.task_uuid;
END $$;

-- Retention: up to p_limit tasks that finished before p_before, oldest
-- first, deleted as tasker.delete_tasks does (the API's DELETE /v1/tasks).
-- It reads every task's row (no index on the finishing time: one would
-- make each task's last update a non-HOT one); run it now and then.
CREATE OR REPLACE FUNCTION tasker.delete_tasks_finished_before(p_before timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    SELECT * FROM tasker.delete_tasks(ARRAY(
        SELECT t.task_uuid FROM tasker.tasks t
         WHERE tasker.task_finished(t.state)
           AND coalesce(t.completed_at, t.updated_at) < p_before
         ORDER BY coalesce(t.completed_at, t.updated_at)
         LIMIT p_limit))
$$;
