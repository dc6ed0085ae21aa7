-- Orchestration's side of a step's result: the messages on
-- orchestration_step_results taken, each result applied (complete, retry
-- or error; a batchable step's batches; a decision's choice), and each
-- task evaluated (evaluate.sql), all in one transaction. The worker's side
-- (recording the result, sending this message) is the queue's submit_
-- function (worker_queues.sql).

-- Orchestration's hot path: take up to p_qty messages from
-- orchestration_step_results, apply the step results they announce
-- (plain completions set-based), evaluate each task once (evaluate_tasks:
-- set-based for the common cases), delete the messages; one transaction
-- for the batch. batch_messages (the same on every row) says how many messages were
-- taken, so the caller knows whether the queue is drained. Tasks are
-- locked in uuid order, so concurrent orchestrators never deadlock, and
-- two results of one task are never evaluated side by side (each would
-- miss the other's step and the join step would never run). A message
-- that names no known task or carries a malformed uuid is rejected
-- (tasker.reject_message) instead of failing the batch.
CREATE OR REPLACE FUNCTION tasker.process_step_results(p_qty integer)
RETURNS TABLE (task_uuid uuid, task_state tasker.task_state, enqueued integer,
               next_retry_at timestamptz, batch_messages integer)
LANGUAGE plpgsql
-- One plan for every call, by key (see worker_queues.sql); it holds for
-- the functions called from here too.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_msg_ids bigint[];
    v_messages jsonb[];
    -- each message's task (NULL when it names none, or a step that is
    -- not a uuid)
    v_msg_tasks uuid[];
    m jsonb;
    v_task uuid;
    v_tasks uuid[] := '{}';
    v_steps uuid[] := '{}';
    v_step_tasks uuid[] := '{}';
    v_completed uuid[];
    v_completed_tasks uuid[];
    -- tasks with news other than plain completions: evaluated in full
    v_full uuid[] := '{}';
    v_step uuid;
    v_i integer := 0;
    v_taken integer := 0;
BEGIN
    -- The messages are taken and deleted in one statement: this whole batch
    -- is one transaction, so if it fails they are simply there again, and
    -- until it commits their row locks hide them from other orchestrators.
    -- By key from an array, as the claim does (worker_queues.sql). Their
    -- order (by task, then message) is the order results are applied in.
    WITH taken AS (
        DELETE FROM pgmq.q_orchestration_step_results q
         WHERE q.msg_id = ANY (ARRAY(SELECT r.msg_id FROM pgmq.q_orchestration_step_results r
                                      WHERE r.vt <= clock_timestamp()
                                      ORDER BY r.msg_id LIMIT p_qty
                                        FOR UPDATE SKIP LOCKED))
        RETURNING q.msg_id, q.message
    )
    SELECT array_agg(t.msg_id ORDER BY t.message->>'task_uuid', t.msg_id),
           array_agg(t.message ORDER BY t.message->>'task_uuid', t.msg_id),
           array_agg(CASE WHEN t.message ? 'step_uuid' AND tasker.as_uuid(t.message->>'step_uuid') IS NULL
                          THEN NULL ELSE tasker.as_uuid(t.message->>'task_uuid') END
                     ORDER BY t.message->>'task_uuid', t.msg_id)
      INTO v_msg_ids, v_messages, v_msg_tasks FROM taken t;
    v_taken := coalesce(cardinality(v_msg_ids), 0);
    IF v_taken = 0 THEN
        RETURN;
    END IF;
    -- Their tasks locked by one statement, in uuid order, so concurrent
    -- orchestrators never deadlock; a task that does not exist is not
    -- among them.
    v_tasks := ARRAY(SELECT t.task_uuid FROM tasker.tasks t
                      WHERE t.task_uuid = ANY (v_msg_tasks)
                      ORDER BY t.task_uuid FOR NO KEY UPDATE);
    -- And their rows updated: the one-statement path
    -- (statements/complete_steps.sql) takes a task only when its row is
    -- the version its snapshot saw, so one that waited for this lock sees
    -- that this transaction changed the task.
    UPDATE tasker.tasks t SET updated_at = clock_timestamp() WHERE t.task_uuid = ANY (v_tasks);
    FOR i IN 1 .. v_taken LOOP
        v_task := v_msg_tasks[i];
        m := v_messages[i];
        IF v_task IS NULL THEN
            PERFORM tasker.reject_message('orchestration_step_results', v_msg_ids[i], m,
                'task_uuid or step_uuid is missing or not a uuid');
        ELSIF NOT (v_task = ANY (v_tasks)) THEN
            PERFORM tasker.reject_message('orchestration_step_results', v_msg_ids[i], m,
                'no such task');
        ELSIF m ? 'step_uuid' THEN
            v_steps := v_steps || (m->>'step_uuid')::uuid;
            v_step_tasks := v_step_tasks || v_task;
        ELSE
            v_full := v_full || v_task; -- a retry's backoff has passed
        END IF;
    END LOOP;
    -- The common result, a step completed that starts nothing of its own
    -- (not a decision, not a batchable step), for the whole batch in one
    -- UPDATE and one history INSERT. A step is named once a message, and
    -- a redelivered message finds its step already past this state.
    WITH done AS (
        UPDATE tasker.workflow_steps ws
           SET state = 'complete', transitions = ws.transitions + 1,
               processed_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE ws.workflow_step_uuid = ANY (v_steps)
           AND ws.state = 'enqueued_for_orchestration'
           AND ws.step_type NOT IN ('decision', 'batchable')
           -- A filter on the rows found, not a second key: as
           -- `task_uuid = ANY (v_tasks)` the plan could find the steps by
           -- their tasks and read every step of a long task.
           AND array_position(v_tasks, ws.task_uuid) IS NOT NULL
        RETURNING ws.workflow_step_uuid, ws.task_uuid, ws.step_type, ws.transitions
    ), history AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key)
        SELECT d.workflow_step_uuid, 'enqueued_for_orchestration', 'complete', d.transitions
          FROM done d
    )
    SELECT coalesce(array_agg(d.workflow_step_uuid), '{}'), coalesce(array_agg(d.task_uuid), '{}'),
           v_full || coalesce(array_agg(d.task_uuid) FILTER (WHERE d.step_type = 'batch_worker'), '{}')
      INTO v_completed, v_completed_tasks, v_full FROM done d;
    -- Every other result (errors, retries, decisions, batches, messages
    -- whose step is not waiting for one) one at a time, in message order.
    FOREACH v_step IN ARRAY v_steps LOOP
        v_i := v_i + 1;
        CONTINUE WHEN v_step = ANY (v_completed);
        -- Its task is evaluated in full (the message's, and the step's own
        -- should the message name another).
        v_full := v_full || v_step_tasks[v_i]
                  || ARRAY(SELECT ws.task_uuid FROM tasker.workflow_steps ws
                            WHERE ws.workflow_step_uuid = v_step);
        PERFORM tasker.apply_step_result(v_step);
    END LOOP;
    -- The completions of the tasks that had no other news (a finished batch
    -- worker frees a slot for its waiting siblings: other news) let
    -- evaluate_tasks decide them from the completed steps' children.
    RETURN QUERY SELECT e.*, v_taken
      FROM tasker.evaluate_tasks(v_tasks,
               ARRAY(SELECT c.step FROM unnest(v_completed, v_completed_tasks) c(step, task)
                      WHERE NOT (c.task = ANY (v_full)))) e;
    -- A batch of rejected messages only still says how many were taken.
    IF cardinality(v_tasks) = 0 AND v_taken > 0 THEN
        RETURN QUERY SELECT NULL::uuid, NULL::tasker.task_state, 0, NULL::timestamptz, v_taken;
    END IF;
END $$;

-- Apply one step's reported result: complete it, or schedule its retry
-- (a delayed message on orchestration_step_results makes any orchestrator
-- re-evaluate the task when the backoff has passed), or fail it for good.
-- A step already past this point (a redelivered message) is left alone.
-- A batchable step's decision is applied when it completes (its batches
-- created, or the step failed with the problem), and a batch worker that
-- fails for good says which batch it was.
CREATE OR REPLACE FUNCTION tasker.apply_step_result(p_step uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_delay bigint;
    v_at timestamptz;
    v_problem text;
    v_error jsonb;
    v_sort integer;
BEGIN
    SELECT ws.* INTO s FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step;
    IF s.state = 'enqueued_for_orchestration' THEN
        IF s.step_type = 'batchable' THEN
            v_problem := tasker.create_batches(s.task_uuid, p_step);
        END IF;
        IF v_problem IS NOT NULL THEN
            v_error := jsonb_build_object('error_type', 'InvalidBatchOutcome', 'retryable', false,
                'message', format('batchable step %s: %s', s.name, v_problem));
            UPDATE tasker.workflow_steps SET last_error = v_error, processed_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE workflow_step_uuid = p_step;
            PERFORM tasker.transition_step(p_step, 'enqueued_for_orchestration', 'error',
                jsonb_build_object('attempts', s.attempts, 'error', v_error));
            RETURN;
        END IF;
        -- The transition and the step's processed_at in one UPDATE (what
        -- tasker.transition_step does, without a second version of the row).
        UPDATE tasker.workflow_steps ws
           SET state = 'complete', transitions = ws.transitions + 1,
               processed_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE ws.workflow_step_uuid = p_step AND ws.state = 'enqueued_for_orchestration'
        RETURNING ws.transitions INTO v_sort;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'step % is in state %, not enqueued_for_orchestration', p_step,
                coalesce(tasker.step_state_of(p_step)::text, 'unknown (no such step)')
                USING ERRCODE = 'TK002';
        END IF;
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key)
        VALUES (p_step, 'enqueued_for_orchestration', 'complete', v_sort);
        IF s.step_type = 'decision' THEN
            PERFORM tasker.apply_decision(s.task_uuid, p_step, s.results);
        END IF;
    ELSIF s.state = 'enqueued_as_error_for_orchestration' THEN
        IF s.retryable AND coalesce((s.last_error->>'retryable')::boolean, true)
           AND s.attempts < s.max_attempts THEN
            v_delay := tasker.backoff_delay_ms(s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.attempts);
            PERFORM tasker.transition_step(p_step, 'enqueued_as_error_for_orchestration',
                'waiting_for_retry', jsonb_build_object('attempt', s.attempts, 'backoff_ms', v_delay));
            -- Counted from after the transition is recorded, so the history
            -- never shows a wait shorter than the backoff.
            v_at := clock_timestamp() + make_interval(secs => v_delay / 1000.0);
            UPDATE tasker.workflow_steps SET next_retry_at = v_at, updated_at = clock_timestamp()
             WHERE workflow_step_uuid = p_step;
            PERFORM tasker.send_to_orchestration(
                jsonb_build_object('task_uuid', s.task_uuid, 'retry_due', p_step), v_at);
        ELSE
            v_error := s.last_error;
            IF s.step_type = 'batch_worker' THEN
                v_error := coalesce(v_error, '{}') || jsonb_build_object('batch', jsonb_build_object(
                    'index', s.inputs->'batch'->'index', 'count', s.inputs->'batch'->'count',
                    'cursor', s.inputs->'batch'->'cursor'));
            END IF;
            PERFORM tasker.transition_step(p_step, 'enqueued_as_error_for_orchestration', 'error',
                jsonb_build_object('attempts', s.attempts, 'error', v_error));
            UPDATE tasker.workflow_steps SET last_error = v_error, processed_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE workflow_step_uuid = p_step;
        END IF;
    END IF;
END $$;

-- A decision step chose its next steps (results.next_steps, a list of
-- names). Its other children are skipped (cancelled), and so is every
-- pending step whose parents were all skipped.
CREATE OR REPLACE FUNCTION tasker.apply_decision(p_task uuid, p_step uuid, p_results jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_selected jsonb := coalesce(p_results->'next_steps', '[]'::jsonb);
    r record;
    v_skipped integer;
BEGIN
    -- Children and parents by key (scalar subqueries; see README.md, plans).
    FOR r IN SELECT e.to_step_uuid FROM tasker.workflow_step_edges e
              WHERE e.from_step_uuid = p_step
                AND NOT (v_selected ? (SELECT c.name FROM tasker.workflow_steps c
                                        WHERE c.workflow_step_uuid = e.to_step_uuid))
    LOOP
        PERFORM tasker.try_transition_step(r.to_step_uuid, 'pending', 'cancelled',
            jsonb_build_object('reason', 'not selected by decision step', 'decision_step', p_step));
    END LOOP;
    LOOP
        v_skipped := 0;
        FOR r IN SELECT sr.workflow_step_uuid FROM tasker.tasks_step_readiness(ARRAY[p_task]) sr
                  WHERE sr.current_state = 'pending' AND sr.total_parents > 0
                    AND (SELECT count(*) FROM tasker.workflow_step_edges e
                          WHERE e.to_step_uuid = sr.workflow_step_uuid
                            AND tasker.step_state_of(e.from_step_uuid) <> 'cancelled') = 0
        LOOP
            PERFORM tasker.try_transition_step(r.workflow_step_uuid, 'pending', 'cancelled',
                '{"reason": "every parent was skipped"}'::jsonb);
            v_skipped := v_skipped + 1;
        END LOOP;
        EXIT WHEN v_skipped = 0;
    END LOOP;
END $$;

-- Retry delay after `attempts` attempts, in milliseconds (same rule as
-- RetryPolicy::delay_ms in template.rs).
CREATE OR REPLACE FUNCTION tasker.backoff_delay_ms(
    p_backoff text, p_base_ms integer, p_max_ms integer, p_attempts integer
) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(p_max_ms::bigint, CASE p_backoff
        WHEN 'exponential' THEN (p_base_ms::numeric * power(2::numeric, greatest(p_attempts - 1, 0)))
        WHEN 'linear' THEN p_base_ms::numeric * greatest(p_attempts, 1)
        ELSE p_base_ms::numeric
    END)::bigint
$$;
