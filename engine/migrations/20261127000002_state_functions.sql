-- State changes as compare-and-swap, readiness, and the execution context.
--
-- Custom SQLSTATEs (mapped to Rust errors in state.rs):
--   TK001 illegal transition   TK002 state mismatch (CAS lost)
--   TK003 unknown task/step    TK004 unknown template

-- Current state of a task / step (the most_recent transition).
CREATE FUNCTION tasker.task_state_of(p_task uuid) RETURNS tasker.task_state
LANGUAGE sql STABLE AS $$
    SELECT to_state FROM tasker.task_transitions WHERE task_uuid = p_task AND most_recent
$$;

CREATE FUNCTION tasker.step_state_of(p_step uuid) RETURNS tasker.step_state
LANGUAGE sql STABLE AS $$
    SELECT to_state FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step AND most_recent
$$;

-- Move a task from p_from to p_to. Raises TK001 when the pair is not a legal
-- transition; returns false when the task is not in p_from (somebody else
-- moved it first). The UPDATE's row lock makes it a true CAS: a concurrent
-- caller waits, re-reads most_recent = false and gets false.
CREATE FUNCTION tasker.try_transition_task(
    p_task uuid, p_from tasker.task_state, p_to tasker.task_state, p_metadata jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sort integer;
BEGIN
    -- One statement on the common path: the rule check rides on the CAS.
    UPDATE tasker.task_transitions SET most_recent = false
     WHERE task_uuid = p_task AND most_recent AND to_state = p_from
       AND EXISTS (SELECT 1 FROM tasker.task_state_rules WHERE from_state = p_from AND to_state = p_to)
    RETURNING sort_key INTO v_sort;
    IF NOT FOUND THEN
        PERFORM 1 FROM tasker.task_state_rules WHERE from_state = p_from AND to_state = p_to;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'illegal task transition % -> % (task %)', p_from, p_to, p_task
                USING ERRCODE = 'TK001';
        END IF;
        RETURN false;
    END IF;
    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key, most_recent)
    VALUES (p_task, p_from, p_to, p_metadata, v_sort + 1, true);
    RETURN true;
END $$;

-- As try_transition_task, but a lost CAS is an error (TK002) naming the
-- state the task is really in. For callers that expect to own the task.
CREATE FUNCTION tasker.transition_task(
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

CREATE FUNCTION tasker.try_transition_step(
    p_step uuid, p_from tasker.step_state, p_to tasker.step_state, p_metadata jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sort integer;
BEGIN
    -- One statement on the common path: the rule check rides on the CAS.
    UPDATE tasker.workflow_step_transitions SET most_recent = false
     WHERE workflow_step_uuid = p_step AND most_recent AND to_state = p_from
       AND EXISTS (SELECT 1 FROM tasker.step_state_rules WHERE from_state = p_from AND to_state = p_to)
    RETURNING sort_key INTO v_sort;
    IF NOT FOUND THEN
        PERFORM 1 FROM tasker.step_state_rules WHERE from_state = p_from AND to_state = p_to;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'illegal step transition % -> % (step %)', p_from, p_to, p_step
                USING ERRCODE = 'TK001';
        END IF;
        RETURN false;
    END IF;
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, metadata, sort_key, most_recent)
    VALUES (p_step, p_from, p_to, p_metadata, v_sort + 1, true);
    RETURN true;
END $$;

CREATE FUNCTION tasker.transition_step(
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

-- Readiness of every step of a task. A step is ready when it is pending or
-- waiting for retry, every parent is complete, resolved manually or skipped
-- (cancelled by a decision), it has attempts left and its backoff has passed.
CREATE FUNCTION tasker.step_readiness(p_task uuid)
RETURNS TABLE (
    workflow_step_uuid uuid,
    name               text,
    current_state      tasker.step_state,
    total_parents      integer,
    completed_parents  integer,
    attempts           integer,
    max_attempts       integer,
    next_retry_at      timestamptz,
    ready              boolean
)
LANGUAGE sql STABLE AS $$
    WITH steps AS (
        SELECT s.workflow_step_uuid, s.name, t.to_state AS state, s.attempts, s.max_attempts,
               s.next_retry_at
          FROM tasker.workflow_steps s
          JOIN tasker.workflow_step_transitions t
            ON t.workflow_step_uuid = s.workflow_step_uuid AND t.most_recent
         WHERE s.task_uuid = p_task
    ), parents AS (
        SELECT e.to_step_uuid,
               count(*)::integer AS total,
               (count(*) FILTER (WHERE p.state IN ('complete', 'resolved_manually', 'cancelled')))::integer AS done
          FROM steps p
          JOIN tasker.workflow_step_edges e ON e.from_step_uuid = p.workflow_step_uuid
         GROUP BY e.to_step_uuid
    )
    SELECT s.workflow_step_uuid, s.name, s.state,
           coalesce(p.total, 0), coalesce(p.done, 0),
           s.attempts, s.max_attempts, s.next_retry_at,
           s.state IN ('pending', 'waiting_for_retry')
             AND coalesce(p.done, 0) = coalesce(p.total, 0)
             AND s.attempts < s.max_attempts
             AND (s.next_retry_at IS NULL OR s.next_retry_at <= clock_timestamp())
      FROM steps s
      LEFT JOIN parents p ON p.to_step_uuid = s.workflow_step_uuid
$$;

-- What a task's steps add up to, and what orchestration should do next.
-- execution_status is one of: all_complete, has_ready_steps, processing,
-- waiting_for_retry, blocked_by_failures, waiting_for_dependencies.
CREATE FUNCTION tasker.task_execution_context(p_task uuid)
RETURNS TABLE (
    task_uuid          uuid,
    total_steps        integer,
    pending_steps      integer,
    ready_steps        integer,
    in_flight_steps    integer,
    waiting_for_retry_steps integer,
    completed_steps    integer,
    failed_steps       integer,
    skipped_steps      integer,
    next_retry_at      timestamptz,
    has_ready_steps    boolean,
    processing         boolean,
    blocked_by_failures boolean,
    all_complete       boolean,
    waiting_for_dependencies boolean,
    execution_status   text,
    -- the ready steps and their states, for enqueuing them
    ready_step_uuids   uuid[],
    ready_step_states  tasker.step_state[]
)
LANGUAGE sql STABLE AS $$
    WITH r AS (SELECT * FROM tasker.step_readiness(p_task)),
    c AS (
        SELECT count(*)::integer AS total,
               (count(*) FILTER (WHERE current_state = 'pending'))::integer AS pending,
               (count(*) FILTER (WHERE ready))::integer AS ready,
               (count(*) FILTER (WHERE current_state IN ('enqueued', 'in_progress',
                    'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')))::integer AS in_flight,
               (count(*) FILTER (WHERE current_state = 'waiting_for_retry'))::integer AS retrying,
               (count(*) FILTER (WHERE current_state IN ('complete', 'resolved_manually')))::integer AS completed,
               (count(*) FILTER (WHERE current_state = 'error'))::integer AS failed,
               (count(*) FILTER (WHERE current_state = 'cancelled'))::integer AS skipped,
               min(next_retry_at) FILTER (WHERE current_state = 'waiting_for_retry') AS next_retry_at,
               coalesce(array_agg(workflow_step_uuid ORDER BY name) FILTER (WHERE ready), '{}') AS ready_uuids,
               coalesce(array_agg(current_state ORDER BY name) FILTER (WHERE ready), '{}') AS ready_states
          FROM r
    )
    SELECT p_task, c.total, c.pending, c.ready, c.in_flight, c.retrying, c.completed, c.failed,
           c.skipped, c.next_retry_at,
           c.ready > 0,
           c.in_flight > 0,
           c.failed > 0 AND c.ready = 0 AND c.in_flight = 0 AND c.retrying = 0,
           c.total > 0 AND c.completed + c.skipped = c.total,
           c.failed = 0 AND c.ready = 0 AND c.in_flight = 0 AND c.retrying = 0 AND c.pending > 0,
           CASE
             WHEN c.total > 0 AND c.completed + c.skipped = c.total THEN 'all_complete'
             WHEN c.ready > 0 THEN 'has_ready_steps'
             WHEN c.in_flight > 0 THEN 'processing'
             WHEN c.retrying > 0 THEN 'waiting_for_retry'
             WHEN c.failed > 0 THEN 'blocked_by_failures'
             ELSE 'waiting_for_dependencies'
           END,
           c.ready_uuids, c.ready_states
      FROM c
$$;

-- Retry delay after `attempts` attempts, in milliseconds (same rule as
-- RetryPolicy::delay_ms in template.rs).
CREATE FUNCTION tasker.backoff_delay_ms(
    p_backoff text, p_base_ms integer, p_max_ms integer, p_attempts integer
) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(p_max_ms::bigint, CASE p_backoff
        WHEN 'exponential' THEN (p_base_ms::numeric * power(2::numeric, greatest(p_attempts - 1, 0)))
        WHEN 'linear' THEN p_base_ms::numeric * greatest(p_attempts, 1)
        ELSE p_base_ms::numeric
    END)::bigint
$$;
