-- Per-queue hot-path functions with static SQL.
--
-- Measured (pg_stat_statements, track = all, linear scenario): the generic
-- queue_send / queue_delete / queue_read wrappers cost 0.15-0.19 ms a call
-- for statements that run in 0.02-0.03 ms, because EXECUTE plans its
-- statement afresh every time; that was about 0.5 ms of the ~3.9 ms of
-- server time a step took. Each worker queue now gets its own claim,
-- submit and send functions, whose statements name the queue's table
-- directly and so keep cached plans. The worker calls its queue's claim_
-- and submit_ functions by name; orchestration reaches send_<queue> with
-- one cheap EXECUTE per batch of steps.

-- The CREATE statements of one worker queue's functions: %2$I is the
-- queue's pgmq table, %3$I..%5$I the claim_, submit_ and send_ functions.
CREATE FUNCTION tasker.worker_queue_functions_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $outer$
SELECT format($fn$
CREATE OR REPLACE FUNCTION tasker.%3$I(p_vt integer, p_qty integer, p_worker text)
RETURNS TABLE (
    msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, step_name text, step_type text,
    handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
    dependency_results jsonb, attempt integer, timeout_seconds integer, child_step_names text[]
)
LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    m record;
    v_step uuid;
BEGIN
    FOR m IN WITH picked AS (
                 SELECT q.msg_id FROM pgmq.%2$I q WHERE q.vt <= clock_timestamp()
                  ORDER BY q.msg_id LIMIT p_qty FOR UPDATE SKIP LOCKED)
             UPDATE pgmq.%2$I q
                SET vt = clock_timestamp() + make_interval(secs => p_vt),
                    read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
               FROM picked WHERE q.msg_id = picked.msg_id
             RETURNING q.msg_id, q.message
    LOOP
        v_step := (m.message->>'step_uuid')::uuid;
        IF tasker.try_transition_step(v_step, 'enqueued', 'in_progress',
                                      jsonb_build_object('worker', p_worker)) THEN
            RETURN QUERY
            UPDATE tasker.workflow_steps s
               SET attempts = s.attempts + 1, last_attempted_at = clock_timestamp(),
                   claim_msg_id = m.msg_id, updated_at = clock_timestamp()
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
                              WHERE e.from_step_uuid = s.workflow_step_uuid), '{}'::text[]);
        ELSIF (SELECT ws.claim_msg_id FROM tasker.workflow_steps ws
                WHERE ws.workflow_step_uuid = v_step) IS DISTINCT FROM m.msg_id THEN
            -- a duplicate delivery of a step already claimed: drop it unrun
            DELETE FROM pgmq.%2$I q WHERE q.msg_id = m.msg_id;
        END IF;
    END LOOP;
END $body$;

CREATE OR REPLACE FUNCTION tasker.%4$I(p_results jsonb)
RETURNS TABLE (workflow_step_uuid uuid, accepted boolean)
LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    r jsonb;
    v_step uuid;
    v_success boolean;
    v_accepted boolean;
    v_task uuid;
    v_attempt integer;
    v_any boolean := false;
    v_msgs bigint[] := '{}';
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(p_results) LOOP
        v_step := (r->>'step_uuid')::uuid;
        v_success := (r->>'success')::boolean;
        v_accepted := tasker.try_transition_step(v_step, 'in_progress',
            CASE WHEN v_success THEN 'enqueued_for_orchestration'
                 ELSE 'enqueued_as_error_for_orchestration' END::tasker.step_state,
            jsonb_build_object('worker', r->>'worker_id',
                               'execution_time_us', (r->>'execution_time_us')::bigint));
        IF v_accepted THEN
            UPDATE tasker.workflow_steps ws
               SET results = CASE WHEN v_success THEN r->'result' ELSE ws.results END,
                   last_error = CASE WHEN v_success THEN NULL ELSE r->'error' END,
                   claim_msg_id = NULL, updated_at = clock_timestamp()
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
        END IF;
        -- Either the result is recorded, or the step was taken away from
        -- this claim (reset or cancelled): the message is done with.
        v_msgs := v_msgs || (r->>'msg_id')::bigint;
        RETURN QUERY SELECT v_step, v_accepted;
    END LOOP;
    DELETE FROM pgmq.%2$I q WHERE q.msg_id = ANY (v_msgs);
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

-- Create a worker queue (a pgmq queue) and its functions, unless they
-- exist. Serialized, as several servers may register templates at once.
CREATE OR REPLACE FUNCTION tasker.create_worker_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $outer$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tasker.create_worker_queue'));
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = p_queue) THEN
        PERFORM pgmq.create(p_queue);
    END IF;
    IF to_regproc('tasker.' || quote_ident('send_' || p_queue)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE tasker.worker_queue_functions_sql(p_queue);
END $outer$;

CREATE OR REPLACE FUNCTION tasker.register_template(
    p_namespace text, p_name text, p_version text, p_template jsonb
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_namespace integer;
    v_named_task uuid;
    v_queue text := tasker.worker_queue_name(p_namespace);
BEGIN
    INSERT INTO tasker.namespaces (name) VALUES (p_namespace) ON CONFLICT (name) DO NOTHING;
    SELECT namespace_id INTO v_namespace FROM tasker.namespaces WHERE name = p_namespace;

    INSERT INTO tasker.named_tasks (namespace_id, name, version, template)
    VALUES (v_namespace, p_name, p_version, p_template)
    ON CONFLICT (namespace_id, name, version) DO UPDATE
        SET template = EXCLUDED.template, updated_at = now()
        WHERE tasker.named_tasks.template IS DISTINCT FROM EXCLUDED.template
    RETURNING named_task_uuid INTO v_named_task;
    IF v_named_task IS NULL THEN
        SELECT named_task_uuid INTO v_named_task FROM tasker.named_tasks
         WHERE namespace_id = v_namespace AND name = p_name AND version = p_version;
    END IF;

    IF to_regproc('tasker.' || quote_ident('send_' || v_queue)) IS NULL THEN
        PERFORM tasker.create_worker_queue(v_queue);
    END IF;
    RETURN v_named_task;
END $$;

-- The generic entry points stay (tools, older workers) and go through the
-- queue's own functions.
CREATE OR REPLACE FUNCTION tasker.claim_steps(p_queue text, p_vt integer, p_qty integer, p_worker text)
RETURNS TABLE (
    msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, step_name text, step_type text,
    handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
    dependency_results jsonb, attempt integer, timeout_seconds integer, child_step_names text[]
)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT * FROM tasker.%I($1, $2, $3)', 'claim_' || p_queue)
        USING p_vt, p_qty, p_worker;
END $$;

CREATE OR REPLACE FUNCTION tasker.submit_step_results(p_queue text, p_results jsonb)
RETURNS TABLE (workflow_step_uuid uuid, accepted boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT * FROM tasker.%I($1)', 'submit_' || p_queue)
        USING p_results;
END $$;

-- Enqueue the given ready steps (p_states: the state each is in now) on
-- the task's namespace queue, one send for the batch. The caller holds
-- the task's row lock. Returns how many were enqueued.
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
            v_messages := v_messages || jsonb_build_object('task_uuid', p_task, 'step_uuid', p_steps[i]);
        END IF;
    END LOOP;
    IF cardinality(v_messages) > 0 THEN
        EXECUTE format('SELECT tasker.%I($1)', 'send_' || v_queue) USING v_messages;
        PERFORM pg_notify(v_queue, '');
    END IF;
    RETURN cardinality(v_messages);
END $$;

-- A state lookup as a LANGUAGE sql function cannot be inlined (it has a
-- FROM), so every call planned its query afresh (0.25 ms a call here);
-- PL/pgSQL keeps the plan for the session.
CREATE OR REPLACE FUNCTION tasker.task_state_of(p_task uuid) RETURNS tasker.task_state
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT to_state FROM tasker.task_transitions WHERE task_uuid = p_task AND most_recent);
END $$;

CREATE OR REPLACE FUNCTION tasker.step_state_of(p_step uuid) RETURNS tasker.step_state
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT to_state FROM tasker.workflow_step_transitions
             WHERE workflow_step_uuid = p_step AND most_recent);
END $$;

-- Existing worker queues get their functions now.
DO $$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'worker\_%\_queue' LOOP
        EXECUTE tasker.worker_queue_functions_sql(q);
    END LOOP;
END $$;
