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
-- on the hot path.
CREATE OR REPLACE FUNCTION tasker.create_task(
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

    -- A new task has no other writer, and nothing sees it before this
    -- transaction commits with its root steps enqueued: it goes in directly
    -- in steps_in_process, with the history of the four states it passes
    -- through (below), instead of two more compare-and-swap transitions.
    INSERT INTO tasker.tasks (named_task_uuid, context, identity_hash, priority, correlation_id,
                              initiator, source_system, reason, tags, state, transitions)
    VALUES (v_named_task, coalesce(p_context, '{}'), v_identity, coalesce(p_priority, 0),
            p_correlation_id, p_initiator, p_source_system, p_reason, coalesce(p_tags, '{}'),
            'steps_in_process', 4)
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
    ELSE
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

        INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key)
        SELECT ws.workflow_step_uuid, NULL, 'pending', 1
          FROM tasker.workflow_steps ws WHERE ws.task_uuid = v_task;
    END IF;

    -- The root steps, from the execution context in this function's own
    -- statement: a LANGUAGE sql wrapper with a FROM is planned afresh on
    -- every call (0.7 ms a task here), a PL/pgSQL statement once a session.
    SELECT tasker.enqueue_steps(v_task, c.ready_step_uuids, c.ready_step_states)
      INTO v_enqueued FROM tasker.task_execution_context(v_task) c;
    RETURN QUERY SELECT v_task, true, v_enqueued;
END $$;
