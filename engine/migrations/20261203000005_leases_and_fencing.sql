-- Leases, fencing, and messages that cannot be processed.
--
-- A claim is a lease: the claimed message stays hidden for the step's
-- timeout_seconds plus a margin (the worker's claim_lease_margin_s). The
-- worker enforces the timeout, so a live worker reports before the lease
-- ends. A worker that dies lets the lease lapse: the message is visible
-- again, and the next claim of it counts the interrupted attempt (an audit
-- row and last_error of type ClaimExpired) and runs the step again as a new
-- attempt, or, with no attempts left, fails the step with that reason.
--
-- Every claim gets a token. A result is recorded only when it carries the
-- step's current token (fencing): a worker paused past its lease, whose
-- step was claimed again meanwhile, cannot overwrite the newer attempt.
--
-- A message that is not what its queue carries (not an object with the
-- expected uuids, or naming no known step or task) is moved to
-- tasker.rejected_messages with the reason instead of failing its
-- consumer's transaction again and again.

ALTER TABLE tasker.workflow_steps ADD COLUMN claim_token uuid;

-- A lapsed lease puts the step back to enqueued before it is claimed again.
INSERT INTO tasker.step_state_rules (from_state, to_state) VALUES ('in_progress', 'enqueued');

CREATE TABLE tasker.rejected_messages (
    queue_name  text NOT NULL,
    msg_id      bigint NOT NULL,
    message     jsonb,
    reason      text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (queue_name, msg_id)
);

-- A uuid from text, or NULL when the text is not one (a cast would raise
-- and fail the whole batch). Inlined by the planner.
CREATE FUNCTION tasker.as_uuid(p_text text) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN p_text::uuid END
$$;

CREATE FUNCTION tasker.reject_message(p_queue text, p_msg_id bigint, p_message jsonb, p_reason text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO tasker.rejected_messages (queue_name, msg_id, message, reason)
    VALUES (p_queue, p_msg_id, p_message, p_reason)
    ON CONFLICT DO NOTHING
$$;

-- The lease of a claim of p_step lapsed without a result: its worker died
-- or stalled. Count the interrupted attempt; then either put the step back
-- to enqueued to be claimed as a new attempt (returns 'reclaim'), or, with
-- no attempts left, fail it with the reason and tell orchestration
-- ('failed'; the caller deletes the message). NULL: the step was no longer
-- in progress (its result landed meanwhile), nothing done. A lost worker
-- re-runs a step whatever its `retryable`: delivery is at least once,
-- bounded by max_attempts.
CREATE FUNCTION tasker.expire_claim(p_step uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_worker text;
    v_retry boolean;
    v_error jsonb;
BEGIN
    SELECT ws.task_uuid, ws.attempts, ws.max_attempts, ws.timeout_seconds, ws.last_attempted_at
      INTO s FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step;
    SELECT t.metadata->>'worker' INTO v_worker FROM tasker.workflow_step_transitions t
     WHERE t.workflow_step_uuid = p_step AND t.most_recent;
    v_retry := s.attempts < s.max_attempts;
    IF NOT tasker.try_transition_step(p_step, 'in_progress',
            CASE WHEN v_retry THEN 'enqueued' ELSE 'enqueued_as_error_for_orchestration' END::tasker.step_state,
            jsonb_build_object('reason', 'claim_expired', 'attempt', s.attempts, 'worker', v_worker)) THEN
        RETURN NULL;
    END IF;
    v_error := jsonb_build_object(
        'error_type', 'ClaimExpired',
        'message', format('attempt %s: no result from worker %s within its lease (timeout_seconds %s plus the margin); the worker died or stalled',
                          s.attempts, coalesce(v_worker, '(unknown)'), s.timeout_seconds),
        'retryable', v_retry);
    INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, task_uuid, attempt, success,
        execution_time_us, worker_id, error_type, error_message, retryable)
    VALUES (p_step, s.task_uuid, s.attempts, false,
            (extract(epoch FROM clock_timestamp() - s.last_attempted_at) * 1000000)::bigint,
            v_worker, 'ClaimExpired', v_error->>'message', v_retry)
    ON CONFLICT DO NOTHING;
    IF v_retry THEN
        UPDATE tasker.workflow_steps SET last_error = v_error, claim_token = NULL,
               updated_at = clock_timestamp()
         WHERE workflow_step_uuid = p_step;
        RETURN 'reclaim';
    END IF;
    UPDATE tasker.workflow_steps SET last_error = v_error, claim_msg_id = NULL, claim_token = NULL,
           updated_at = clock_timestamp()
     WHERE workflow_step_uuid = p_step;
    INSERT INTO pgmq.q_orchestration_step_results (vt, message)
    VALUES (clock_timestamp(), jsonb_build_object('task_uuid', s.task_uuid, 'step_uuid', p_step));
    PERFORM pg_notify('orchestration_step_results', '');
    RETURN 'failed';
END $$;

-- The claim and submit functions of a worker queue (see 0004), now with
-- leases sized from the step's timeout, claim tokens, lapsed leases and
-- rejected messages. The claim function's result type changes, so it is
-- dropped first.
CREATE OR REPLACE FUNCTION tasker.worker_queue_functions_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $outer$
SELECT format($fn$
DROP FUNCTION IF EXISTS tasker.%3$I(integer, integer, text);
CREATE FUNCTION tasker.%3$I(p_margin integer, p_qty integer, p_worker text)
RETURNS TABLE (
    msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, step_name text, step_type text,
    handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
    dependency_results jsonb, attempt integer, timeout_seconds integer, child_step_names text[],
    claim_token uuid
)
LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    m record;
    v_step uuid;
    v_claimed boolean;
    v_held bigint;
    v_expired text;
BEGIN
    -- The lease: hidden for the step's timeout (carried by the message,
    -- see tasker.enqueue_steps; 30 s, the template default, for a message
    -- without it) plus the margin. Not looked up here: a subquery in this
    -- statement, which is planned afresh on every call (its generic plan
    -- is far worse), cost 0.1 ms a claim in planning alone.
    FOR m IN WITH picked AS (
                 SELECT q.msg_id FROM pgmq.%2$I q WHERE q.vt <= clock_timestamp()
                  ORDER BY q.msg_id LIMIT p_qty FOR UPDATE SKIP LOCKED)
             UPDATE pgmq.%2$I q
                SET vt = clock_timestamp() + make_interval(secs => p_margin +
                        CASE WHEN q.message->>'timeout_s' ~ '^[0-9]{1,7}$'
                             THEN (q.message->>'timeout_s')::integer ELSE 30 END),
                    read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
               FROM picked WHERE q.msg_id = picked.msg_id
             RETURNING q.msg_id, q.message
    LOOP
        v_step := tasker.as_uuid(m.message->>'step_uuid');
        v_claimed := v_step IS NOT NULL AND tasker.try_transition_step(v_step, 'enqueued',
            'in_progress', jsonb_build_object('worker', p_worker));
        IF NOT v_claimed THEN
            SELECT ws.claim_msg_id INTO v_held FROM tasker.workflow_steps ws
             WHERE ws.workflow_step_uuid = v_step;
            IF NOT FOUND THEN
                PERFORM tasker.reject_message(%1$L, m.msg_id, m.message,
                    CASE WHEN v_step IS NULL THEN 'step_uuid is missing or not a uuid'
                         ELSE 'no such step' END);
                DELETE FROM pgmq.%2$I q WHERE q.msg_id = m.msg_id;
            ELSIF v_held = m.msg_id AND tasker.step_state_of(v_step) = 'in_progress' THEN
                -- This claim's own message is visible again: its lease lapsed.
                v_expired := tasker.expire_claim(v_step);
                IF v_expired = 'reclaim' THEN
                    v_claimed := tasker.try_transition_step(v_step, 'enqueued', 'in_progress',
                        jsonb_build_object('worker', p_worker, 'reclaimed', true));
                ELSIF v_expired = 'failed' THEN
                    DELETE FROM pgmq.%2$I q WHERE q.msg_id = m.msg_id;
                END IF;
            ELSE
                -- A duplicate delivery of a step claimed or done: dropped unrun.
                DELETE FROM pgmq.%2$I q WHERE q.msg_id = m.msg_id;
            END IF;
        END IF;
        IF v_claimed THEN
            RETURN QUERY
            UPDATE tasker.workflow_steps s
               SET attempts = s.attempts + 1, last_attempted_at = clock_timestamp(),
                   claim_msg_id = m.msg_id, claim_token = gen_random_uuid(),
                   updated_at = clock_timestamp()
              FROM tasker.tasks t
             WHERE s.workflow_step_uuid = v_step AND t.task_uuid = s.task_uuid
            RETURNING m.msg_id, s.task_uuid, s.workflow_step_uuid, s.name, s.step_type,
                   s.handler_callable, s.handler_initialization, s.inputs, t.context,
                   coalesce((SELECT jsonb_object_agg(p.name, p.results)
                               FROM tasker.workflow_step_edges e
                               JOIN tasker.workflow_steps p ON p.workflow_step_uuid = e.from_step_uuid
                              WHERE e.to_step_uuid = s.workflow_step_uuid), '{}'::jsonb),
                   s.attempts, s.timeout_seconds,
                   coalesce((SELECT array_agg(c.name ORDER BY c.name)
                               FROM tasker.workflow_step_edges e
                               JOIN tasker.workflow_steps c ON c.workflow_step_uuid = e.to_step_uuid
                              WHERE e.from_step_uuid = s.workflow_step_uuid), '{}'::text[]),
                   s.claim_token;
        END IF;
    END LOOP;
END $body$;

-- Results: recorded only under the claim's token. p_results is a JSON
-- array of {step_uuid, msg_id, claim_token, success, result,
-- error: {error_type, message, retryable}, execution_time_us, worker_id}.
CREATE OR REPLACE FUNCTION tasker.%4$I(p_results jsonb)
RETURNS TABLE (workflow_step_uuid uuid, accepted boolean)
LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    r jsonb;
    v_step uuid;
    v_msg bigint;
    v_success boolean;
    v_accepted boolean;
    v_task uuid;
    v_attempt integer;
    v_any boolean := false;
    v_message pgmq.%2$I;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(p_results) LOOP
        v_step := tasker.as_uuid(r->>'step_uuid');
        v_msg := (r->>'msg_id')::bigint;
        v_message := NULL;
        v_success := (r->>'success')::boolean;
        -- The claim's message first, in the order a claim locks: while it
        -- is held, the lease cannot lapse into another worker's hands, so
        -- the token read next stays the step's token. Deleting it takes
        -- that lock and is what an accepted result needs anyway (a lock
        -- alone would cost a WAL record per result); a refused result puts
        -- it back below when it is still somebody's claim.
        DELETE FROM pgmq.%2$I q WHERE q.msg_id = v_msg RETURNING q.* INTO v_message;
        v_accepted := coalesce((SELECT ws.claim_token = tasker.as_uuid(r->>'claim_token')
                                  FROM tasker.workflow_steps ws
                                 WHERE ws.workflow_step_uuid = v_step), false)
            AND tasker.try_transition_step(v_step, 'in_progress',
                CASE WHEN v_success THEN 'enqueued_for_orchestration'
                     ELSE 'enqueued_as_error_for_orchestration' END::tasker.step_state,
                jsonb_build_object('worker', r->>'worker_id',
                                   'execution_time_us', (r->>'execution_time_us')::bigint));
        IF v_accepted THEN
            UPDATE tasker.workflow_steps ws
               SET results = CASE WHEN v_success THEN r->'result' ELSE ws.results END,
                   last_error = CASE WHEN v_success THEN NULL ELSE r->'error' END,
                   claim_msg_id = NULL, claim_token = NULL, updated_at = clock_timestamp()
             WHERE ws.workflow_step_uuid = v_step
            RETURNING ws.task_uuid, ws.attempts INTO v_task, v_attempt;
            INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, task_uuid, attempt,
                success, execution_time_us, worker_id, error_type, error_message, retryable)
            VALUES (v_step, v_task, v_attempt, v_success, (r->>'execution_time_us')::bigint,
                    r->>'worker_id', r->'error'->>'error_type', r->'error'->>'message',
                    (r->'error'->>'retryable')::boolean);
            INSERT INTO pgmq.q_orchestration_step_results (vt, message)
            VALUES (clock_timestamp(), jsonb_build_object('task_uuid', v_task, 'step_uuid', v_step));
            v_any := true;
        ELSIF v_message.msg_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM tasker.workflow_steps ws
                 WHERE ws.workflow_step_uuid = v_step
                   AND (ws.claim_msg_id = v_msg OR tasker.step_state_of(v_step) = 'enqueued')) THEN
            -- Refused, and the message is still a claim's: a newer claim
            -- holds it, or the step waits to be claimed again (a claim lost
            -- with an asynchronous commit). Put back as it was. Otherwise
            -- the step moved on and the message is done with.
            INSERT INTO pgmq.%2$I OVERRIDING SYSTEM VALUE SELECT v_message.*;
        END IF;
        RETURN QUERY SELECT v_step, v_accepted;
    END LOOP;
    IF v_any THEN
        PERFORM pg_notify('orchestration_step_results', '');
    END IF;
END $body$;

CREATE OR REPLACE FUNCTION tasker.%5$I(p_messages jsonb[]) RETURNS void
LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO pgmq.%2$I (vt, message) SELECT clock_timestamp(), m FROM unnest(p_messages) m;
END $body$;
$fn$, p_queue, 'q_' || p_queue, 'claim_' || p_queue, 'submit_' || p_queue, 'send_' || p_queue)
$outer$;

-- The generic wrappers of 0004 return the old claim row; workers call
-- their queue's functions by name.
DROP FUNCTION tasker.claim_steps(text, integer, integer, text);
DROP FUNCTION tasker.submit_step_results(text, jsonb);

-- Orchestration's hot path (see 0003), now rejecting messages that name no
-- known task or carry a malformed step uuid, instead of failing the batch.
CREATE OR REPLACE FUNCTION tasker.process_step_results(p_qty integer)
RETURNS TABLE (task_uuid uuid, task_state tasker.task_state, enqueued integer,
               next_retry_at timestamptz, batch_messages integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m record;
    v_task uuid;
    v_tasks uuid[] := '{}';
    v_taken integer := 0;
BEGIN
    -- The messages are taken and deleted in one statement: this whole batch
    -- is one transaction, so if it fails they are simply there again, and
    -- until it commits their row locks hide them from other orchestrators.
    FOR m IN WITH taken AS (
                 DELETE FROM pgmq.q_orchestration_step_results q
                  WHERE q.msg_id IN (SELECT r.msg_id FROM pgmq.q_orchestration_step_results r
                                      WHERE r.vt <= clock_timestamp()
                                      ORDER BY r.msg_id LIMIT p_qty
                                        FOR UPDATE SKIP LOCKED)
              RETURNING q.msg_id, q.message)
             SELECT taken.msg_id, taken.message FROM taken
              ORDER BY taken.message->>'task_uuid', taken.msg_id
    LOOP
        v_taken := v_taken + 1;
        v_task := tasker.as_uuid(m.message->>'task_uuid');
        IF v_task IS NULL OR (m.message ? 'step_uuid'
                              AND tasker.as_uuid(m.message->>'step_uuid') IS NULL) THEN
            PERFORM tasker.reject_message('orchestration_step_results', m.msg_id, m.message,
                'task_uuid or step_uuid is missing or not a uuid');
            CONTINUE;
        END IF;
        IF NOT (v_task = ANY (v_tasks)) THEN
            PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = v_task FOR NO KEY UPDATE;
            IF NOT FOUND THEN
                PERFORM tasker.reject_message('orchestration_step_results', m.msg_id, m.message,
                    'no such task');
                CONTINUE;
            END IF;
            v_tasks := v_tasks || v_task;
        END IF;
        IF m.message ? 'step_uuid' THEN
            PERFORM tasker.apply_step_result((m.message->>'step_uuid')::uuid);
        END IF;
    END LOOP;
    FOREACH v_task IN ARRAY v_tasks LOOP
        RETURN QUERY SELECT e.*, v_taken FROM tasker.evaluate_task(v_task) e;
    END LOOP;
    -- A batch of rejected messages only still says how many were taken.
    IF cardinality(v_tasks) = 0 AND v_taken > 0 THEN
        RETURN QUERY SELECT NULL::uuid, NULL::tasker.task_state, 0, NULL::timestamptz, v_taken;
    END IF;
END $$;

-- A step's message: its ids, and its timeout, which sizes the claim's
-- lease. PL/pgSQL, not SQL: a SQL function with a FROM is never inlined
-- and would be planned on every call.
CREATE FUNCTION tasker.step_message(p_task uuid, p_step uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object('task_uuid', p_task, 'step_uuid', p_step,
                                      'timeout_s', ws.timeout_seconds)
              FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step);
END $$;

-- As in 0004, with the step's timeout in each message.
CREATE OR REPLACE FUNCTION tasker.enqueue_steps(p_task uuid, p_steps uuid[], p_states tasker.step_state[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_messages jsonb[] := '{}';
BEGIN
    IF cardinality(p_steps) = 0 THEN
        RETURN 0;
    END IF;
    SELECT tasker.worker_queue_name(ns.name) INTO v_queue
      FROM tasker.tasks t
      JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
     WHERE t.task_uuid = p_task;
    FOR i IN 1 .. cardinality(p_steps) LOOP
        IF tasker.try_transition_step(p_steps[i], p_states[i], 'enqueued') THEN
            v_messages := v_messages || tasker.step_message(p_task, p_steps[i]);
        END IF;
    END LOOP;
    IF cardinality(v_messages) > 0 THEN
        EXECUTE format('SELECT tasker.%I($1)', 'send_' || v_queue) USING v_messages;
        PERFORM pg_notify(v_queue, '');
    END IF;
    RETURN cardinality(v_messages);
END $$;

-- Existing worker queues get the new functions now, and their messages
-- their steps' timeouts.
DO $$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'worker\_%\_queue' LOOP
        EXECUTE tasker.worker_queue_functions_sql(q);
        EXECUTE format(
            'UPDATE pgmq.%I m SET message = m.message || jsonb_build_object(''timeout_s'', ws.timeout_seconds)
               FROM tasker.workflow_steps ws
              WHERE ws.workflow_step_uuid = tasker.as_uuid(m.message->>''step_uuid'')', 'q_' || q);
    END LOOP;
END $$;

-- Work that is visible but nobody was told about: a lapsed lease (its
-- message became visible again without a notification), a retry whose
-- timer died with its orchestrator, a notification lost while a consumer
-- reconnected. Notifies every queue holding a visible message, so its
-- consumers wake and claim it; run by the staleness detector on an
-- interval. Returns the queues notified.
CREATE FUNCTION tasker.notify_visible_work() RETURNS SETOF text
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
