-- States and state changes: the current state of a task or step, and the
-- compare-and-swap transitions every state change goes through. The legal
-- pairs are the tables tasker.task_state_rules and tasker.step_state_rules
-- (the schema migration); state.rs holds the same rules.
--
-- Custom SQLSTATEs (mapped to Rust errors in state.rs):
--   TK001 illegal transition   TK002 state mismatch (CAS lost)
--   TK003 unknown task/step    TK004 unknown template
--   TK005 a plain submit declined (worker_queues.sql, tasker.decline_submit)

-- Current state of a task / step: its row's `state`.
-- PL/pgSQL, not SQL: a state lookup as a LANGUAGE sql function cannot be
-- inlined (it has a FROM), so every call planned its query afresh (0.25 ms
-- a call here); PL/pgSQL keeps the plan for the session.
CREATE OR REPLACE FUNCTION tasker.task_state_of(p_task uuid) RETURNS tasker.task_state
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT state FROM tasker.tasks WHERE task_uuid = p_task);
END $$;

CREATE OR REPLACE FUNCTION tasker.step_state_of(p_step uuid) RETURNS tasker.step_state
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = p_step);
END $$;

-- A step on its way through a worker or back (its message is on a queue,
-- or a worker holds it): something will report on it and make its task
-- be evaluated again. IMMUTABLE SQL of one expression, so it is inlined
-- into the queries that call it.
CREATE OR REPLACE FUNCTION tasker.step_in_flight(p_state tasker.step_state) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                       'enqueued_as_error_for_orchestration')
$$;

-- Move a task from p_from to p_to. Raises TK001 when the pair is not a legal
-- transition; returns false when the task is not in p_from (somebody else
-- moved it first). The UPDATE's row lock makes it a true CAS: a concurrent
-- caller waits, re-reads the state and gets false. The history row is an
-- insert, numbered by the row's transition count.
CREATE OR REPLACE FUNCTION tasker.try_transition_task(
    p_task uuid, p_from tasker.task_state, p_to tasker.task_state, p_metadata jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sort integer;
BEGIN
    -- One statement on the common path: the rule check rides on the CAS.
    UPDATE tasker.tasks SET state = p_to, transitions = transitions + 1
     WHERE task_uuid = p_task AND state = p_from
       AND EXISTS (SELECT 1 FROM tasker.task_state_rules WHERE from_state = p_from AND to_state = p_to)
    RETURNING transitions INTO v_sort;
    IF NOT FOUND THEN
        PERFORM 1 FROM tasker.task_state_rules WHERE from_state = p_from AND to_state = p_to;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'illegal task transition % -> % (task %)', p_from, p_to, p_task
                USING ERRCODE = 'TK001';
        END IF;
        RETURN false;
    END IF;
    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key)
    VALUES (p_task, p_from, p_to, p_metadata, v_sort);
    RETURN true;
END $$;

-- As try_transition_task, but a lost CAS is an error (TK002) naming the
-- state the task is really in. For callers that expect to own the task.
CREATE OR REPLACE FUNCTION tasker.transition_task(
    p_task uuid, p_from tasker.task_state, p_to tasker.task_state, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT tasker.try_transition_task(p_task, p_from, p_to, p_metadata) THEN
        RAISE EXCEPTION 'task % is in state %, not %', p_task,
            coalesce(tasker.task_state_of(p_task)::text, 'unknown (no such task)'), p_from
            USING ERRCODE = 'TK002';
    END IF;
END $$;

-- The same for steps.
CREATE OR REPLACE FUNCTION tasker.try_transition_step(
    p_step uuid, p_from tasker.step_state, p_to tasker.step_state, p_metadata jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sort integer;
BEGIN
    -- One statement on the common path: the rule check rides on the CAS.
    UPDATE tasker.workflow_steps SET state = p_to, transitions = transitions + 1
     WHERE workflow_step_uuid = p_step AND state = p_from
       AND EXISTS (SELECT 1 FROM tasker.step_state_rules WHERE from_state = p_from AND to_state = p_to)
    RETURNING transitions INTO v_sort;
    IF NOT FOUND THEN
        PERFORM 1 FROM tasker.step_state_rules WHERE from_state = p_from AND to_state = p_to;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'illegal step transition % -> % (step %)', p_from, p_to, p_step
                USING ERRCODE = 'TK001';
        END IF;
        RETURN false;
    END IF;
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, metadata, sort_key)
    VALUES (p_step, p_from, p_to, p_metadata, v_sort);
    RETURN true;
END $$;

-- As transition_task, for steps.
CREATE OR REPLACE FUNCTION tasker.transition_step(
    p_step uuid, p_from tasker.step_state, p_to tasker.step_state, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT tasker.try_transition_step(p_step, p_from, p_to, p_metadata) THEN
        RAISE EXCEPTION 'step % is in state %, not %', p_step,
            coalesce(tasker.step_state_of(p_step)::text, 'unknown (no such step)'), p_from
            USING ERRCODE = 'TK002';
    END IF;
END $$;
