-- What the staleness detector (orchestration/staleness.rs) runs: work
-- nobody was told about woken up, stuck tasks found, repaired or
-- dead-lettered, and dead letters put back.
--
-- A task that made no progress (no transition of its own or of a step) for
-- a while is examined by the staleness detector (tasker.repair_task):
-- whatever message one of its steps should have but has not (lost by an
-- operator's purge, a bug, a restore) is sent again, and a step whose claim
-- message is gone is treated as a lapsed lease (the attempt counted; run
-- again or failed by its retry policy). A task with nothing to repair that
-- still cannot move (its steps wait for a worker that never claims them)
-- is moved to tasker.dead_letters with the reason: its waiting steps are
-- cancelled and the task ends in error. tasker.retry_dead_letter puts it
-- back: the dead-lettered and failed steps are pending again with a fresh
-- budget of attempts, and the task is evaluated again.

-- Work that is visible but nobody was told about: a lapsed lease (its
-- message became visible again without a notification), a retry whose
-- timer died with its orchestrator, a notification lost while a consumer
-- reconnected. Notifies every queue holding a visible message, so its
-- consumers wake and claim it; run by the staleness detector on an
-- interval. Returns the queues notified.
CREATE OR REPLACE FUNCTION tasker.notify_visible_work() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    q text;
    v_visible boolean;
BEGIN
    FOR q IN SELECT queue_name FROM pgmq.meta
              WHERE queue_name LIKE 'worker\_%\_queue' OR queue_name = 'orchestration_step_results'
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgmq.%I WHERE vt <= clock_timestamp())', 'q_' || q)
           INTO v_visible;
        IF v_visible THEN
            PERFORM pg_notify(q, '');
            RETURN NEXT q;
        END IF;
    END LOOP;
END $$;

-- No index serves this scan on purpose: one on unfinished tasks would make
-- every task's completion a non-HOT update (+0.9 WAL records per step,
-- measured by the gate's per-step costs). The detector runs it only every
-- tenth of task_stale_after_s, so a sequential scan is cheap.
-- Unfinished tasks created more than p_after ago with no transition (of the
-- task or a step) in the last p_after, oldest first.
CREATE OR REPLACE FUNCTION tasker.stale_tasks(p_after interval, p_limit integer) RETURNS SETOF uuid
LANGUAGE sql STABLE AS $$
    SELECT t.task_uuid FROM tasker.tasks t
     WHERE t.completed_at IS NULL AND t.created_at < clock_timestamp() - p_after
       AND NOT EXISTS (SELECT 1 FROM tasker.task_transitions tt
                        WHERE tt.task_uuid = t.task_uuid AND tt.created_at > clock_timestamp() - p_after)
       AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
                         JOIN tasker.workflow_step_transitions st USING (workflow_step_uuid)
                        WHERE s.task_uuid = t.task_uuid AND st.created_at > clock_timestamp() - p_after)
     ORDER BY t.created_at
     LIMIT p_limit
$$;

-- When p_step's message on worker queue p_queue becomes (or became)
-- visible; NULL when there is none.
CREATE OR REPLACE FUNCTION tasker.step_message_vt(p_queue text, p_step uuid) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_vt timestamptz;
BEGIN
    EXECUTE format('SELECT min(vt) FROM pgmq.%I WHERE message->>''step_uuid'' = $1', 'q_' || p_queue)
       INTO v_vt USING p_step::text;
    RETURN v_vt;
END $$;

-- Whether orchestration_step_results holds a message for the task (and
-- the step, unless p_step is NULL), visible or not.
CREATE OR REPLACE FUNCTION tasker.orchestration_message_exists(p_task uuid, p_step uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pgmq.q_orchestration_step_results q
                    WHERE q.message->>'task_uuid' = p_task::text
                      AND (p_step IS NULL OR q.message->>'step_uuid' = p_step::text))
$$;

-- Examine a stale task under its row lock (skipped if another orchestrator
-- holds it). Each step in flight should have its message: one that is
-- missing is sent again (resent), and a claim whose message is gone is a
-- lapsed lease (reclaimed, or failed when no attempt is left). A task with
-- nothing in flight is evaluated again (evaluate). A step whose message is
-- there but that no worker claims (waiting) is only reported, until the
-- task has been idle for p_dead_after (when that is not zero): then the
-- task is dead-lettered (dead_letter). Returns one row per finding.
CREATE OR REPLACE FUNCTION tasker.repair_task(p_task uuid, p_dead_after interval)
RETURNS TABLE (action text, detail text)
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_queue text;
    v_vt timestamptz;
    v_state tasker.task_state;
    v_idle interval;
    v_stuck text;
    v_expired text;
    v_acted boolean := false;
    v_in_flight boolean := false;
BEGIN
    PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = p_task AND t.completed_at IS NULL
        FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_state := tasker.task_state_of(p_task);
    SELECT t.worker_queue INTO v_queue FROM tasker.tasks t WHERE t.task_uuid = p_task;
    FOR s IN SELECT ws.workflow_step_uuid AS step, ws.name, ws.next_retry_at,
                    ws.state AS state
               FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task ORDER BY ws.name
    LOOP
        IF s.state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                       'enqueued_as_error_for_orchestration', 'waiting_for_retry') THEN
            v_in_flight := true;
        END IF;
        IF s.state IN ('enqueued', 'in_progress') THEN
            v_vt := tasker.step_message_vt(v_queue, s.step);
        END IF;
        IF s.state = 'enqueued' AND v_vt IS NULL THEN
            PERFORM tasker.send_to_worker_queue(v_queue, ARRAY[tasker.step_message(p_task, s.step)]);
            v_acted := true;
            RETURN QUERY SELECT 'resent', format('step %s: its message was missing', s.name);
        ELSIF s.state = 'enqueued' THEN
            v_stuck := format('step %s waits in %s and no worker claims it', s.name, v_queue);
        ELSIF s.state = 'in_progress' AND v_vt IS NULL THEN
            v_acted := true;
            v_expired := tasker.expire_claim(s.step);
            IF v_expired = 'reclaim' THEN
                PERFORM tasker.send_to_worker_queue(v_queue,
                    ARRAY[tasker.step_message(p_task, s.step)]);
                RETURN QUERY SELECT 'reclaimed', format('step %s: its claim message was missing', s.name);
            ELSIF v_expired = 'failed' THEN
                RETURN QUERY SELECT 'failed',
                    format('step %s: its claim message was missing and no attempt is left', s.name);
            END IF;
        ELSIF s.state = 'in_progress' AND v_vt <= clock_timestamp() THEN
            v_stuck := format('step %s: its lease lapsed and no worker of %s claims it again',
                              s.name, v_queue);
        ELSIF s.state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
              AND NOT tasker.orchestration_message_exists(p_task, s.step) THEN
            PERFORM tasker.send_to_orchestration(
                jsonb_build_object('task_uuid', p_task, 'step_uuid', s.step));
            PERFORM pg_notify('orchestration_step_results', '');
            v_acted := true;
            RETURN QUERY SELECT 'resent', format('step %s: its result message was missing', s.name);
        ELSIF s.state = 'waiting_for_retry' AND NOT tasker.orchestration_message_exists(p_task, NULL) THEN
            PERFORM tasker.send_to_orchestration(
                jsonb_build_object('task_uuid', p_task, 'retry_due', s.step),
                greatest(s.next_retry_at, clock_timestamp()));
            v_acted := true;
            RETURN QUERY SELECT 'resent', format('step %s: its retry message was missing', s.name);
        END IF;
    END LOOP;
    IF v_acted THEN
        RETURN;
    END IF;
    IF NOT v_in_flight THEN
        -- Nothing in flight and nothing moving: look at the task afresh.
        PERFORM tasker.send_to_orchestration(jsonb_build_object('task_uuid', p_task));
        PERFORM pg_notify('orchestration_step_results', '');
        RETURN QUERY SELECT 'evaluate', 'nothing in flight';
        RETURN;
    END IF;
    IF v_stuck IS NULL THEN
        RETURN;  -- running within its lease, or waiting for a retry
    END IF;
    SELECT clock_timestamp() - greatest(
               (SELECT max(tt.created_at) FROM tasker.task_transitions tt WHERE tt.task_uuid = p_task),
               (SELECT max((SELECT max(st.created_at) FROM tasker.workflow_step_transitions st
                             WHERE st.workflow_step_uuid = ws.workflow_step_uuid))
                  FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task))
      INTO v_idle;
    IF p_dead_after > interval '0' AND v_idle >= p_dead_after THEN
        v_stuck := format('%s (idle for %s)', v_stuck, date_trunc('second', v_idle));
        PERFORM tasker.dead_letter_task(p_task, v_state, v_queue, v_stuck);
        RETURN QUERY SELECT 'dead_letter', v_stuck;
    ELSE
        RETURN QUERY SELECT 'waiting', v_stuck;
    END IF;
END $$;

-- Move a task to the dead letters: record why and how it stood, cancel
-- its waiting steps (deleting their messages) and end it in error.
CREATE OR REPLACE FUNCTION tasker.dead_letter_task(p_task uuid, p_state tasker.task_state, p_queue text, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    INSERT INTO tasker.dead_letters (task_uuid, reason, task_state, steps)
    SELECT p_task, p_reason, p_state,
           jsonb_object_agg(ws.name, ws.state)
      FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task
    ON CONFLICT (task_uuid) DO UPDATE
        SET reason = EXCLUDED.reason, task_state = EXCLUDED.task_state, steps = EXCLUDED.steps,
            created_at = clock_timestamp(), retried_at = NULL;
    FOR s IN SELECT ws.workflow_step_uuid AS step, ws.state AS state
               FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task
    LOOP
        IF s.state IN ('pending', 'enqueued', 'in_progress', 'waiting_for_retry') THEN
            PERFORM tasker.transition_step(s.step, s.state, 'cancelled',
                jsonb_build_object('reason', 'dead_letter', 'dead_letter', p_reason));
            EXECUTE format('DELETE FROM pgmq.%I WHERE message->>''step_uuid'' = $1', 'q_' || p_queue)
                USING s.step::text;
            UPDATE tasker.workflow_steps SET claim_msg_id = NULL, claim_token = NULL,
                   updated_at = clock_timestamp() WHERE workflow_step_uuid = s.step;
        END IF;
    END LOOP;
    PERFORM tasker.settle_task(p_task, p_state, 'error', jsonb_build_object('dead_letter', p_reason));
    UPDATE tasker.tasks SET completed_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE task_uuid = p_task;
    PERFORM pg_notify('tasker_task_finalized', p_task::text || ':error');
END $$;

-- Put a dead-lettered task back: its dead-lettered and failed steps are
-- pending again with a fresh budget of attempts (the template's
-- max_attempts on top of those used: attempt numbers stay unique), and
-- the task is evaluated, which enqueues what is ready. Raises TK003 when
-- the task is not in the dead letters.
CREATE OR REPLACE FUNCTION tasker.retry_dead_letter(p_task uuid)
RETURNS TABLE (task_uuid uuid, task_state tasker.task_state, enqueued integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s record;
    v_state tasker.task_state;
    e record;
BEGIN
    PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = p_task FOR NO KEY UPDATE;
    PERFORM 1 FROM tasker.dead_letters d WHERE d.task_uuid = p_task AND d.retried_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % is not in the dead letters', p_task USING ERRCODE = 'TK003';
    END IF;
    v_state := tasker.task_state_of(p_task);
    IF v_state <> 'error' THEN
        RAISE EXCEPTION 'task % is %, not error', p_task, v_state USING ERRCODE = 'TK002';
    END IF;
    FOR s IN SELECT ws.workflow_step_uuid AS step, ws.name, ws.attempts,
                    ws.state AS state,
                    (SELECT (ts->'retry'->>'max_attempts')::integer
                       FROM jsonb_array_elements(nt.template->'steps') ts
                      WHERE ts->>'name' = ws.name) AS budget
               FROM tasker.workflow_steps ws
               JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid AND t.task_uuid = p_task
               JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
              WHERE ws.task_uuid = p_task
    LOOP
        IF s.state = 'error' OR (s.state = 'cancelled' AND EXISTS (
                SELECT 1 FROM tasker.workflow_steps ws
                  JOIN tasker.workflow_step_transitions st
                    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.sort_key = ws.transitions
                       AND st.workflow_step_uuid = s.step
                 WHERE ws.workflow_step_uuid = s.step
                   AND st.metadata->>'reason' = 'dead_letter')) THEN
            PERFORM tasker.transition_step(s.step, s.state, 'pending',
                jsonb_build_object('reason', 'dead_letter_retry'));
            UPDATE tasker.workflow_steps
               SET max_attempts = s.attempts + coalesce(s.budget, 1), next_retry_at = NULL,
                   processed_at = NULL, updated_at = clock_timestamp()
             WHERE workflow_step_uuid = s.step;
        END IF;
    END LOOP;
    UPDATE tasker.dead_letters d SET retried_at = clock_timestamp() WHERE d.task_uuid = p_task;
    UPDATE tasker.tasks t SET completed_at = NULL, updated_at = clock_timestamp()
     WHERE t.task_uuid = p_task;
    PERFORM tasker.transition_task(p_task, 'error', 'evaluating_results',
        '{"reason": "dead_letter_retry"}'::jsonb);
    SELECT * INTO e FROM tasker.evaluate_task(p_task);
    RETURN QUERY SELECT p_task, e.task_state, e.enqueued;
END $$;
