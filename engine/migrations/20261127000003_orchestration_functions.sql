-- The hot path. Each function below is one transaction issued as one
-- statement (one round trip): it moves state, writes the transitions, sends
-- the next message and notifies, so a step costs three commits in all
-- (claim, result, orchestration) and no extra round trips.
--
-- Queues: worker_<namespace>_queue (steps for workers),
-- orchestration_step_results (results and due retries for orchestration).
-- Every send is followed by pg_notify(<queue name>, '') so that listeners
-- wake at once; notifications on one channel in one transaction collapse
-- into one.

SELECT pgmq.create('orchestration_step_results');

-- Queue access on the hot path. The queues are pgmq queues (created by
-- pgmq.create, readable by pgmq's tools), but pgmq's own functions build
-- their SQL with format() and literals on every call, which costs about
-- 0.2 ms a call here. These functions do the same operations on pgmq's
-- tables: with static SQL (cached plans) for the orchestration queue, and
-- with constant dynamic SQL and bound parameters for worker queues.

-- Send to a worker queue, visible at once.
CREATE FUNCTION tasker.queue_send(p_queue text, p_message jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO pgmq.%I (vt, message) VALUES (clock_timestamp(), $1)', 'q_' || p_queue)
        USING p_message;
END $$;

-- Take up to p_qty visible messages from a worker queue and hide them for
-- p_vt seconds (pgmq.read's semantics). The read itself is a per-queue
-- function with static SQL, made by tasker.create_worker_queue, so its
-- plan is cached: planning the read afresh on every call cost more than
-- running it.
CREATE FUNCTION tasker.queue_read(p_queue text, p_vt integer, p_qty integer)
RETURNS TABLE (msg_id bigint, message jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT * FROM tasker.%I($1, $2)', 'read_' || p_queue)
        USING p_vt, p_qty;
END $$;

-- Create a worker queue (a pgmq queue) and its read function, unless they
-- exist. Serialized, as several servers may register templates at once.
CREATE FUNCTION tasker.create_worker_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $outer$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tasker.create_worker_queue'));
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = p_queue) THEN
        PERFORM pgmq.create(p_queue);
    END IF;
    IF to_regproc('tasker.' || quote_ident('read_' || p_queue)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format($fn$
        CREATE FUNCTION tasker.%1$I(p_vt integer, p_qty integer)
        RETURNS TABLE (msg_id bigint, message jsonb)
        LANGUAGE plpgsql AS $body$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            WITH picked AS (
                SELECT q.msg_id FROM pgmq.%2$I q WHERE q.vt <= clock_timestamp()
                 ORDER BY q.msg_id LIMIT p_qty FOR UPDATE SKIP LOCKED)
            UPDATE pgmq.%2$I q
               SET vt = clock_timestamp() + make_interval(secs => p_vt),
                   read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
              FROM picked WHERE q.msg_id = picked.msg_id
            RETURNING q.msg_id, q.message;
        END $body$
    $fn$, 'read_' || p_queue, 'q_' || p_queue);
END $outer$;

CREATE FUNCTION tasker.queue_delete(p_queue text, p_msg_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY($1)', 'q_' || p_queue) USING p_msg_ids;
END $$;

-- Send to orchestration, visible at p_at (now, or when a retry is due).
CREATE FUNCTION tasker.send_to_orchestration(p_message jsonb, p_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pgmq.q_orchestration_step_results (vt, message)
    VALUES (coalesce(p_at, clock_timestamp()), p_message);
END $$;

CREATE FUNCTION tasker.worker_queue_name(p_namespace text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'worker_' || p_namespace || '_queue' $$;

-- Store (or update) a template and make sure its namespace's queue exists.
-- Tasks already created keep the steps they were created with.
CREATE FUNCTION tasker.register_template(
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

    IF to_regproc('tasker.' || quote_ident('read_' || v_queue)) IS NULL THEN
        PERFORM tasker.create_worker_queue(v_queue);
    END IF;
    RETURN v_named_task;
END $$;

-- Enqueue the given ready steps (p_states: the state each is in now) on
-- the task's namespace queue. The caller holds the task's row lock.
-- Returns how many were enqueued.
CREATE FUNCTION tasker.enqueue_steps(p_task uuid, p_steps uuid[], p_states tasker.step_state[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_count integer := 0;
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
            PERFORM tasker.queue_send(v_queue,
                jsonb_build_object('task_uuid', p_task, 'step_uuid', p_steps[i]));
            v_count := v_count + 1;
        END IF;
    END LOOP;
    IF v_count > 0 THEN
        PERFORM pg_notify(v_queue, '');
    END IF;
    RETURN v_count;
END $$;

-- Enqueue every ready step of a task.
CREATE FUNCTION tasker.enqueue_ready_steps(p_task uuid) RETURNS integer
LANGUAGE sql AS $$
    SELECT tasker.enqueue_steps(p_task, c.ready_step_uuids, c.ready_step_states)
      FROM tasker.task_execution_context(p_task) c
$$;

-- Create a task from a registered template: the task, its steps and edges,
-- their first transitions, and the root steps enqueued, in one transaction.
-- The task's identity is its template plus its idempotency key, or plus its
-- context when no key is given (jsonb's text form is canonical: key order
-- and spacing do not change it). A second request with the same identity
-- returns the first task.
CREATE FUNCTION tasker.task_identity_hash(
    p_namespace text, p_name text, p_version text, p_context jsonb, p_idempotency_key text
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(
        p_namespace || '/' || p_name || '@' || p_version || ':' ||
        coalesce('key:' || p_idempotency_key, 'context:' || coalesce(p_context, '{}'::jsonb)::text),
        'UTF8')), 'hex')
$$;

CREATE FUNCTION tasker.create_task(
    p_namespace text, p_name text, p_version text, p_context jsonb, p_idempotency_key text,
    p_priority integer DEFAULT 0, p_correlation_id uuid DEFAULT NULL,
    p_initiator text DEFAULT NULL, p_source_system text DEFAULT NULL,
    p_reason text DEFAULT NULL, p_tags jsonb DEFAULT '{}'
) RETURNS TABLE (task_uuid uuid, created boolean, enqueued_steps integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_named_task uuid;
    v_template jsonb;
    v_task uuid;
    v_enqueued integer;
    v_identity text := tasker.task_identity_hash(p_namespace, p_name, p_version, p_context,
                                                 p_idempotency_key);
BEGIN
    SELECT nt.named_task_uuid, nt.template INTO v_named_task, v_template
      FROM tasker.named_tasks nt JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
     WHERE ns.name = p_namespace AND nt.name = p_name AND nt.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown task template %/%@%', p_namespace, p_name, p_version
            USING ERRCODE = 'TK004';
    END IF;

    INSERT INTO tasker.tasks (named_task_uuid, context, identity_hash, priority, correlation_id,
                              initiator, source_system, reason, tags)
    VALUES (v_named_task, coalesce(p_context, '{}'), v_identity, coalesce(p_priority, 0),
            p_correlation_id, p_initiator, p_source_system, p_reason, coalesce(p_tags, '{}'))
    ON CONFLICT (identity_hash) DO NOTHING
    RETURNING task_uuid INTO v_task;
    IF v_task IS NULL THEN
        RETURN QUERY SELECT t.task_uuid, false, 0 FROM tasker.tasks t
                      WHERE t.identity_hash = v_identity;
        RETURN;
    END IF;

    -- A new task has no other writer: its first two states go in directly.
    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key, most_recent)
    VALUES (v_task, NULL, 'pending', 1, false), (v_task, 'pending', 'initializing', 2, true);

    INSERT INTO tasker.workflow_steps (task_uuid, name, step_type, handler_callable,
        handler_initialization, max_attempts, retryable, backoff, backoff_base_ms,
        max_backoff_ms, timeout_seconds)
    SELECT v_task, s->>'name', coalesce(s->>'type', 'standard'), s->'handler'->>'callable',
           coalesce(s->'handler'->'initialization', '{}'),
           (s->'retry'->>'max_attempts')::integer, (s->'retry'->>'retryable')::boolean,
           s->'retry'->>'backoff', (s->'retry'->>'backoff_base_ms')::integer,
           (s->'retry'->>'max_backoff_ms')::integer, (s->>'timeout_seconds')::integer
      FROM jsonb_array_elements(v_template->'steps') s;

    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
    SELECT parent.workflow_step_uuid, child.workflow_step_uuid
      FROM jsonb_array_elements(v_template->'steps') s
      CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(s->'dependencies', '[]')) d(dep)
      JOIN tasker.workflow_steps child ON child.task_uuid = v_task AND child.name = s->>'name'
      JOIN tasker.workflow_steps parent ON parent.task_uuid = v_task AND parent.name = d.dep;

    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key, most_recent)
    SELECT ws.workflow_step_uuid, NULL, 'pending', 1, true
      FROM tasker.workflow_steps ws WHERE ws.task_uuid = v_task;

    PERFORM tasker.transition_task(v_task, 'initializing', 'enqueuing_steps');
    v_enqueued := tasker.enqueue_ready_steps(v_task);
    PERFORM tasker.transition_task(v_task, 'enqueuing_steps', 'steps_in_process');
    RETURN QUERY SELECT v_task, true, v_enqueued;
END $$;

-- Claim up to p_qty step messages for a worker: read them from the queue
-- (hidden for p_vt seconds), move each step enqueued -> in_progress and
-- return what its handler needs. A message whose step is no longer
-- enqueued is a duplicate delivery: it is deleted and its step not run
-- again. The claimed messages stay until the result is committed.
CREATE FUNCTION tasker.claim_steps(p_queue text, p_vt integer, p_qty integer, p_worker text)
RETURNS TABLE (
    msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, step_name text, step_type text,
    handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
    dependency_results jsonb, attempt integer, timeout_seconds integer, child_step_names text[]
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m record;
    v_step uuid;
BEGIN
    FOR m IN SELECT r.msg_id, r.message FROM tasker.queue_read(p_queue, p_vt, p_qty) r LOOP
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
            PERFORM tasker.queue_delete(p_queue, ARRAY[m.msg_id]);
        END IF;
    END LOOP;
END $$;

-- Record handler results from a worker, in one transaction for the batch:
-- each step in_progress -> enqueued_for_orchestration (or ..._as_error_...),
-- its result or error stored, an audit row, a message to orchestration, and
-- the worker's message deleted. p_results is a JSON array of
-- {step_uuid, msg_id, success, result, error: {error_type, message, retryable},
--  execution_time_us, worker_id}.
CREATE FUNCTION tasker.submit_step_results(p_queue text, p_results jsonb)
RETURNS TABLE (workflow_step_uuid uuid, accepted boolean)
LANGUAGE plpgsql AS $$
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
            PERFORM tasker.send_to_orchestration(
                jsonb_build_object('task_uuid', v_task, 'step_uuid', v_step));
            v_any := true;
        END IF;
        -- Either the result is recorded, or the step was taken away from
        -- this claim (reset or cancelled): the message is done with.
        v_msgs := v_msgs || (r->>'msg_id')::bigint;
        RETURN QUERY SELECT v_step, v_accepted;
    END LOOP;
    PERFORM tasker.queue_delete(p_queue, v_msgs);
    IF v_any THEN
        PERFORM pg_notify('orchestration_step_results', '');
    END IF;
END $$;

-- A decision step chose its next steps (results.next_steps, a list of
-- names). Its other children are skipped (cancelled), and so is every
-- pending step whose parents were all skipped.
CREATE FUNCTION tasker.apply_decision(p_task uuid, p_step uuid, p_results jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_selected jsonb := coalesce(p_results->'next_steps', '[]'::jsonb);
    r record;
    v_skipped integer;
BEGIN
    FOR r IN SELECT c.workflow_step_uuid FROM tasker.workflow_step_edges e
               JOIN tasker.workflow_steps c ON c.workflow_step_uuid = e.to_step_uuid
              WHERE e.from_step_uuid = p_step AND NOT (v_selected ? c.name)
    LOOP
        PERFORM tasker.try_transition_step(r.workflow_step_uuid, 'pending', 'cancelled',
            jsonb_build_object('reason', 'not selected by decision step', 'decision_step', p_step));
    END LOOP;
    LOOP
        v_skipped := 0;
        FOR r IN SELECT sr.workflow_step_uuid FROM tasker.step_readiness(p_task) sr
                  WHERE sr.current_state = 'pending' AND sr.total_parents > 0
                    AND NOT EXISTS (
                        SELECT 1 FROM tasker.workflow_step_edges e
                         WHERE e.to_step_uuid = sr.workflow_step_uuid
                           AND tasker.step_state_of(e.from_step_uuid) <> 'cancelled')
        LOOP
            PERFORM tasker.try_transition_step(r.workflow_step_uuid, 'pending', 'cancelled',
                '{"reason": "every parent was skipped"}'::jsonb);
            v_skipped := v_skipped + 1;
        END LOOP;
        EXIT WHEN v_skipped = 0;
    END LOOP;
END $$;

-- Apply one step's reported result: complete it, or schedule its retry
-- (a delayed message on orchestration_step_results makes any orchestrator
-- re-evaluate the task when the backoff has passed), or fail it for good.
-- A step already past this point (a redelivered message) is left alone.
CREATE FUNCTION tasker.apply_step_result(p_step uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_delay bigint;
    v_at timestamptz;
BEGIN
    SELECT ws.*, t.to_state AS state INTO s
      FROM tasker.workflow_steps ws
      JOIN tasker.workflow_step_transitions t
        ON t.workflow_step_uuid = ws.workflow_step_uuid AND t.most_recent
     WHERE ws.workflow_step_uuid = p_step;
    IF s.state = 'enqueued_for_orchestration' THEN
        PERFORM tasker.transition_step(p_step, 'enqueued_for_orchestration', 'complete');
        UPDATE tasker.workflow_steps SET processed_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE workflow_step_uuid = p_step;
        IF s.step_type = 'decision' THEN
            PERFORM tasker.apply_decision(s.task_uuid, p_step, s.results);
        END IF;
    ELSIF s.state = 'enqueued_as_error_for_orchestration' THEN
        IF s.retryable AND coalesce((s.last_error->>'retryable')::boolean, true)
           AND s.attempts < s.max_attempts THEN
            v_delay := tasker.backoff_delay_ms(s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.attempts);
            v_at := clock_timestamp() + make_interval(secs => v_delay / 1000.0);
            UPDATE tasker.workflow_steps SET next_retry_at = v_at, updated_at = clock_timestamp()
             WHERE workflow_step_uuid = p_step;
            PERFORM tasker.transition_step(p_step, 'enqueued_as_error_for_orchestration',
                'waiting_for_retry', jsonb_build_object('attempt', s.attempts, 'backoff_ms', v_delay));
            PERFORM tasker.send_to_orchestration(
                jsonb_build_object('task_uuid', s.task_uuid, 'retry_due', p_step), v_at);
        ELSE
            PERFORM tasker.transition_step(p_step, 'enqueued_as_error_for_orchestration', 'error',
                jsonb_build_object('attempts', s.attempts, 'error', s.last_error));
            UPDATE tasker.workflow_steps SET processed_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE workflow_step_uuid = p_step;
        END IF;
    END IF;
END $$;

-- Move a task from its current state through evaluating_results to p_to.
CREATE FUNCTION tasker.settle_task(
    p_task uuid, p_current tasker.task_state, p_to tasker.task_state, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_current <> 'evaluating_results' THEN
        PERFORM tasker.transition_task(p_task, p_current, 'evaluating_results');
    END IF;
    PERFORM tasker.transition_task(p_task, 'evaluating_results', p_to, p_metadata);
END $$;

-- Decide what a task does next from its execution context: finalize it,
-- enqueue what became ready, or record that it waits. The caller holds
-- the task's row lock. When the task stays in steps_in_process and only
-- enqueues, no task transition is written: evaluating and enqueuing happen
-- inside this one transaction, so those states are never observable.
CREATE FUNCTION tasker.evaluate_task(p_task uuid)
RETURNS TABLE (task_uuid uuid, task_state tasker.task_state, enqueued integer, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_current tasker.task_state := tasker.task_state_of(p_task);
    c record;
    v_enqueued integer := 0;
    v_final tasker.task_state;
BEGIN
    IF v_current IS NULL OR v_current NOT IN ('steps_in_process', 'evaluating_results',
            'waiting_for_retry', 'waiting_for_dependencies', 'blocked_by_failures') THEN
        -- finished, or not yet initialized: nothing to evaluate
        RETURN QUERY SELECT p_task, v_current, 0, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO c FROM tasker.task_execution_context(p_task);
    v_final := v_current;
    CASE c.execution_status
    WHEN 'all_complete' THEN
        PERFORM tasker.settle_task(p_task, v_current, 'complete',
            jsonb_build_object('completed_steps', c.completed_steps, 'skipped_steps', c.skipped_steps));
        UPDATE tasker.tasks SET complete = true, completed_at = clock_timestamp(),
               updated_at = clock_timestamp() WHERE task_uuid = p_task;
        PERFORM pg_notify('tasker_task_finalized', p_task::text || ':complete');
        v_final := 'complete';
    WHEN 'has_ready_steps' THEN
        IF v_current = 'steps_in_process' THEN
            v_enqueued := tasker.enqueue_steps(p_task, c.ready_step_uuids, c.ready_step_states);
        ELSE
            PERFORM tasker.settle_task(p_task, v_current, 'enqueuing_steps');
            v_enqueued := tasker.enqueue_steps(p_task, c.ready_step_uuids, c.ready_step_states);
            PERFORM tasker.transition_task(p_task, 'enqueuing_steps', 'steps_in_process');
        END IF;
        v_final := 'steps_in_process';
    WHEN 'processing' THEN
        IF v_current <> 'steps_in_process' THEN
            PERFORM tasker.settle_task(p_task, v_current, 'steps_in_process');
            v_final := 'steps_in_process';
        END IF;
    WHEN 'waiting_for_retry' THEN
        IF v_current <> 'waiting_for_retry' THEN
            PERFORM tasker.settle_task(p_task, v_current, 'waiting_for_retry');
            v_final := 'waiting_for_retry';
        END IF;
    WHEN 'blocked_by_failures' THEN
        PERFORM tasker.settle_task(p_task, v_current, 'blocked_by_failures',
            jsonb_build_object('failed_steps', c.failed_steps));
        PERFORM tasker.transition_task(p_task, 'blocked_by_failures', 'error');
        UPDATE tasker.tasks SET completed_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE task_uuid = p_task;
        PERFORM pg_notify('tasker_task_finalized', p_task::text || ':error');
        v_final := 'error';
    ELSE
        IF v_current <> 'waiting_for_dependencies' THEN
            PERFORM tasker.settle_task(p_task, v_current, 'waiting_for_dependencies');
            v_final := 'waiting_for_dependencies';
        END IF;
    END CASE;
    RETURN QUERY SELECT p_task, v_final, v_enqueued, c.next_retry_at;
END $$;

-- Orchestration's hot path: take up to p_qty messages from
-- orchestration_step_results, apply the step results they announce,
-- evaluate each task once, delete the messages; one transaction for the
-- batch. batch_messages (the same on every row) says how many messages were
-- taken, so the caller knows whether the queue is drained. Tasks are locked in uuid order, so concurrent orchestrators never
-- deadlock, and two results of one task are never evaluated side by side
-- (each would miss the other's step and the join step would never run).
CREATE FUNCTION tasker.process_step_results(p_qty integer)
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
        v_task := (m.message->>'task_uuid')::uuid;
        IF NOT (v_task = ANY (v_tasks)) THEN
            PERFORM 1 FROM tasker.tasks t WHERE t.task_uuid = v_task FOR NO KEY UPDATE;
            v_tasks := v_tasks || v_task;
        END IF;
        IF m.message ? 'step_uuid' THEN
            PERFORM tasker.apply_step_result((m.message->>'step_uuid')::uuid);
        END IF;
        v_taken := v_taken + 1;
    END LOOP;
    FOREACH v_task IN ARRAY v_tasks LOOP
        RETURN QUERY SELECT e.*, v_taken FROM tasker.evaluate_task(v_task) e;
    END LOOP;
END $$;
