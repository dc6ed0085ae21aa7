-- Creating a task: one statement, one transaction, on the hot path.

-- The task's identity is its template plus its idempotency key, or plus its
-- context when no key is given (jsonb's text form is canonical: key order
-- and spacing do not change it). A second request with the same identity
-- returns the first task. STABLE, not IMMUTABLE: convert_to is stable, and
-- a function declared more strictly than its body is never inlined (it was
-- called, 0.14 ms a task, instead of folded into create_task's statement).
CREATE OR REPLACE FUNCTION tasker.task_identity_hash(
    p_namespace text, p_name text, p_version text, p_context jsonb, p_idempotency_key text
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(
        p_namespace || '/' || p_name || '@' || p_version || ':' ||
        coalesce('key:' || p_idempotency_key, 'context:' || coalesce(p_context, '{}'::jsonb)::text),
        'UTF8')), 'hex')
$$;

-- Create a task from a registered template: the task, its steps and edges,
-- their first transitions, and the root steps enqueued, in one transaction.
-- A template with batch steps has its steps made by
-- tasker.insert_batch_task_steps (batches.sql); the others are made here,
-- on the hot path, in one statement with their root steps' messages.
-- p_task_uuid: the new task's uuid, chosen by the caller (the client
-- waits for the task before it exists); NULL, one made here. A request
-- that matches an existing task returns that task, created false.
-- Its earlier signature, without p_task_uuid:
DROP FUNCTION IF EXISTS tasker.create_task(text, text, text, jsonb, text, integer, uuid, text, text,
                                           text, jsonb);
CREATE OR REPLACE FUNCTION tasker.create_task(
    p_namespace text, p_name text, p_version text, p_context jsonb, p_idempotency_key text,
    p_priority integer DEFAULT 0, p_correlation_id uuid DEFAULT NULL,
    p_initiator text DEFAULT NULL, p_source_system text DEFAULT NULL,
    p_reason text DEFAULT NULL, p_tags jsonb DEFAULT '{}', p_task_uuid uuid DEFAULT NULL
) RETURNS TABLE (task_uuid uuid, created boolean, enqueued_steps integer)
LANGUAGE plpgsql
-- One plan for every call, never a sequential scan (see worker_queues.sql).
-- It holds for the foreign-key checks of the rows inserted here too: made
-- on a tiny table, their plan scanned workflow_steps whole for every step
-- and edge (plans.rs).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_named_task uuid;
    v_template jsonb;
    v_task uuid;
    v_enqueued integer;
    v_messages jsonb[];
    v_identity text := tasker.task_identity_hash(p_namespace, p_name, p_version, p_context,
                                                 p_idempotency_key);
    v_queue text := tasker.worker_queue_name(p_namespace);
BEGIN
    SELECT nt.named_task_uuid, nt.template INTO v_named_task, v_template
      FROM tasker.named_tasks nt JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
     WHERE ns.name = p_namespace AND nt.name = p_name AND nt.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown task template %/%@%', p_namespace, p_name, p_version
            USING ERRCODE = 'TK004';
    END IF;

    -- A new task has no other writer, and nothing sees it before this
    -- transaction commits with its root steps enqueued: it goes in directly
    -- in steps_in_process, with the history of the four states it passes
    -- through (below), instead of two more compare-and-swap transitions.
    INSERT INTO tasker.tasks (task_uuid, named_task_uuid, context, identity_hash, priority,
                              correlation_id, initiator, source_system, reason, tags, state,
                              transitions, worker_queue)
    VALUES (coalesce(p_task_uuid, gen_random_uuid()), v_named_task, coalesce(p_context, '{}'),
            v_identity, coalesce(p_priority, 0),
            p_correlation_id, p_initiator, p_source_system, p_reason, coalesce(p_tags, '{}'),
            'steps_in_process', 4, v_queue)
    ON CONFLICT (identity_hash) DO NOTHING
    RETURNING task_uuid INTO v_task;
    IF v_task IS NULL THEN
        RETURN QUERY SELECT t.task_uuid, false, 0 FROM tasker.tasks t
                      WHERE t.identity_hash = v_identity;
        RETURN;
    END IF;

    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key)
    VALUES (v_task, NULL, 'pending', 1), (v_task, 'pending', 'initializing', 2),
           (v_task, 'initializing', 'enqueuing_steps', 3),
           (v_task, 'enqueuing_steps', 'steps_in_process', 4);

    IF v_template->'steps' @> '[{"type": "batch_worker"}]' THEN
        PERFORM tasker.insert_batch_task_steps(v_task, v_template);
        -- The root steps, from the execution context, in this function's
        -- own statement: planned once a session (a LANGUAGE sql wrapper
        -- with a FROM would be planned again on every call).
        SELECT tasker.enqueue_steps(v_task, c.ready_step_uuids, c.ready_step_states)
          INTO v_enqueued FROM tasker.tasks_execution_context(ARRAY[v_task]) c;
    ELSE
        -- The steps, their edges and their history in one statement. A
        -- root step (no dependencies: ready, since max_attempts >= 1) goes
        -- in already enqueued, with both its transitions; nothing sees it
        -- before this transaction commits with its message sent.
        WITH spec AS (
            SELECT e.s, e.s->>'name' AS name, coalesce(e.s->'dependencies', '[]') AS deps,
                   coalesce(jsonb_array_length(e.s->'dependencies'), 0) = 0 AS root
              FROM jsonb_array_elements(v_template->'steps') e(s)
        ), steps AS (
            INSERT INTO tasker.workflow_steps (task_uuid, name, step_type, handler_callable,
                handler_initialization, max_attempts, retryable, backoff, backoff_base_ms,
                max_backoff_ms, timeout_seconds, state, transitions)
            SELECT v_task, sp.name, coalesce(sp.s->>'type', 'standard'), sp.s->'handler'->>'callable',
                   coalesce(sp.s->'handler'->'initialization', '{}'),
                   (sp.s->'retry'->>'max_attempts')::integer, (sp.s->'retry'->>'retryable')::boolean,
                   sp.s->'retry'->>'backoff', (sp.s->'retry'->>'backoff_base_ms')::integer,
                   (sp.s->'retry'->>'max_backoff_ms')::integer, (sp.s->>'timeout_seconds')::integer,
                   CASE WHEN sp.root THEN 'enqueued' ELSE 'pending' END::tasker.step_state,
                   CASE WHEN sp.root THEN 2 ELSE 1 END
              FROM spec sp
            RETURNING workflow_step_uuid, name, state, timeout_seconds
        ), edges AS (
            INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
            SELECT parent.workflow_step_uuid, child.workflow_step_uuid
              FROM spec sp
              CROSS JOIN LATERAL jsonb_array_elements_text(sp.deps) d(dep)
              JOIN steps child ON child.name = sp.name
              JOIN steps parent ON parent.name = d.dep
        ), history AS (
            INSERT INTO tasker.workflow_step_transitions
                (workflow_step_uuid, from_state, to_state, sort_key)
            SELECT st.workflow_step_uuid, NULL::tasker.step_state, 'pending'::tasker.step_state, 1
              FROM steps st
            UNION ALL
            SELECT st.workflow_step_uuid, 'pending', 'enqueued', 2 FROM steps st
             WHERE st.state = 'enqueued'
        )
        SELECT coalesce(array_agg(jsonb_build_object('task_uuid', v_task,
                   'step_uuid', st.workflow_step_uuid, 'timeout_s', st.timeout_seconds)
                   ORDER BY st.name) FILTER (WHERE st.state = 'enqueued'), '{}')
          INTO v_messages FROM steps st;
        PERFORM tasker.send_to_worker_queue(v_queue, v_messages);
        v_enqueued := cardinality(v_messages);
    END IF;

    RETURN QUERY SELECT v_task, true, v_enqueued;
END $$;
