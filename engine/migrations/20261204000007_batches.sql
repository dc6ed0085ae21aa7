-- Batch steps: a batchable step cuts its work into batches at run time,
-- one batch_worker step runs each batch, and a deferred_convergence step
-- runs once after all of them (see engine/src/template/batch.rs).
--
-- At task creation the batch_worker of a template is not a step: it is the
-- template of the batches' steps, kept on its batchable step
-- (batch_plan). A step that depends on the batch worker depends on its
-- batchable step instead, until the batches exist. When the batchable
-- step's result is applied, in that same transaction, tasker.create_batches
-- creates one step per batch, with edges batchable -> batch -> convergence,
-- and the evaluation that follows enqueues them, at most `parallelism` of
-- one task's batches at a time. "No batches" leaves the convergence step
-- depending on the batchable step alone: it is ready at once.
--
-- Batch workers may save checkpoints (tasker.save_checkpoint), fenced by
-- their claim's token like results; a retry reads the last one and resumes.

ALTER TABLE tasker.workflow_steps
    -- On a batchable step: {"worker": <the batch_worker's template step>,
    -- "convergence": [names of the steps collecting its batches]}.
    ADD COLUMN batch_plan jsonb,
    -- A batch worker's last checkpoint: {cursor, partial, attempt, sequence}.
    ADD COLUMN checkpoint jsonb;

-- Every checkpoint a step saved, in order: the record of a batch's progress
-- across attempts.
CREATE TABLE tasker.workflow_step_checkpoints (
    workflow_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    sequence           integer NOT NULL,
    attempt            integer NOT NULL,
    cursor             jsonb NOT NULL,
    partial            jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_step_uuid, sequence)
);

-- Most batches one batchable step may make (template::MAX_BATCHES).
CREATE FUNCTION tasker.max_batches() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 10000 $$;

-- Batch `p_index` of worker template `p_worker`: process_rows_000, ...
-- (template::worker_step_name).
CREATE FUNCTION tasker.batch_step_name(p_worker text, p_index integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_worker || '_' || lpad(p_index::text, greatest(3, length(p_index::text)), '0')
$$;

-- The steps, edges and first transitions of a new task whose template has
-- batch steps (tasker.create_task does the others itself, on the hot path).
CREATE FUNCTION tasker.insert_batch_task_steps(p_task uuid, p_template jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH steps AS (
        SELECT s, s->>'name' AS name, coalesce(s->>'type', 'standard') AS type
          FROM jsonb_array_elements(p_template->'steps') s
    )
    INSERT INTO tasker.workflow_steps (task_uuid, name, step_type, handler_callable,
        handler_initialization, max_attempts, retryable, backoff, backoff_base_ms,
        max_backoff_ms, timeout_seconds, inputs, batch_plan)
    SELECT p_task, st.name, st.type, st.s->'handler'->>'callable',
           coalesce(st.s->'handler'->'initialization', '{}'),
           (st.s->'retry'->>'max_attempts')::integer, (st.s->'retry'->>'retryable')::boolean,
           st.s->'retry'->>'backoff', (st.s->'retry'->>'backoff_base_ms')::integer,
           (st.s->'retry'->>'max_backoff_ms')::integer, (st.s->>'timeout_seconds')::integer,
           CASE WHEN st.type = 'batchable' THEN jsonb_build_object('batch_config', st.s->'batch_config') END,
           CASE WHEN st.type = 'batchable' THEN jsonb_build_object(
               'worker', w.s,
               'convergence', (SELECT coalesce(jsonb_agg(c.name), '[]') FROM steps c
                                WHERE c.type = 'deferred_convergence' AND c.s->'dependencies' ? w.name))
           END
      FROM steps st
      LEFT JOIN steps w ON st.type = 'batchable' AND w.type = 'batch_worker'
                       AND w.s->'dependencies' ? st.name
     WHERE st.type <> 'batch_worker';

    -- A dependency on a batch worker is, until its batches exist, one on
    -- the worker's batchable step.
    WITH steps AS (
        SELECT s, s->>'name' AS name, coalesce(s->>'type', 'standard') AS type
          FROM jsonb_array_elements(p_template->'steps') s
    )
    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
    SELECT DISTINCT parent.workflow_step_uuid, child.workflow_step_uuid
      FROM steps st
      CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(st.s->'dependencies', '[]')) d(dep)
      LEFT JOIN steps w ON w.name = d.dep AND w.type = 'batch_worker'
      JOIN tasker.workflow_steps child ON child.task_uuid = p_task AND child.name = st.name
      JOIN tasker.workflow_steps parent ON parent.task_uuid = p_task
                                       AND parent.name = coalesce(w.s->'dependencies'->>0, d.dep)
     WHERE st.type <> 'batch_worker';

    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key, most_recent)
    SELECT ws.workflow_step_uuid, NULL, 'pending', 1, true
      FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task;
END $$;

-- As in 0003, with templates that have batch steps handed to
-- tasker.insert_batch_task_steps.
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

        INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key, most_recent)
        SELECT ws.workflow_step_uuid, NULL, 'pending', 1, true
          FROM tasker.workflow_steps ws WHERE ws.task_uuid = v_task;
    END IF;

    PERFORM tasker.transition_task(v_task, 'initializing', 'enqueuing_steps');
    v_enqueued := tasker.enqueue_ready_steps(v_task);
    PERFORM tasker.transition_task(v_task, 'enqueuing_steps', 'steps_in_process');
    RETURN QUERY SELECT v_task, true, v_enqueued;
END $$;

-- The ranges of a batchable step's decision (its result's `batches`:
-- {"total": n}, {"ranges": [...]} or {"none": "why"}), or why the decision
-- is not one. p_size is the step's batch_size.
CREATE FUNCTION tasker.batch_ranges(p_batches jsonb, p_size bigint, OUT ranges jsonb, OUT problem text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_total numeric;
    v_count bigint;
    v_bad bigint;
BEGIN
    IF jsonb_typeof(p_batches) IS DISTINCT FROM 'object' THEN
        problem := 'the result has no "batches" object ({"total": n}, {"ranges": [...]} or {"none": "why"})';
    ELSIF p_batches ? 'none' THEN
        ranges := '[]';
    ELSIF p_batches ? 'total' THEN
        IF jsonb_typeof(p_batches->'total') IS DISTINCT FROM 'number'
           OR (p_batches->>'total')::numeric < 0
           OR (p_batches->>'total')::numeric <> trunc((p_batches->>'total')::numeric) THEN
            problem := format('batches.total must be a non-negative integer, is %s', p_batches->'total');
            RETURN;
        END IF;
        v_total := (p_batches->>'total')::numeric;
        v_count := ceil(v_total / p_size);
        IF v_count > tasker.max_batches() THEN
            problem := format('batches.total %s in batches of %s makes %s batches, more than the %s allowed',
                              v_total, p_size, v_count, tasker.max_batches());
            RETURN;
        END IF;
        SELECT coalesce(jsonb_agg(jsonb_build_object('start', i * p_size,
                                                     'end', least((i + 1) * p_size, v_total)) ORDER BY i), '[]')
          INTO ranges FROM generate_series(0, v_count - 1) i;
    ELSIF p_batches ? 'ranges' THEN
        IF jsonb_typeof(p_batches->'ranges') IS DISTINCT FROM 'array' THEN
            problem := 'batches.ranges must be an array of {"start", "end"} objects';
            RETURN;
        END IF;
        IF jsonb_array_length(p_batches->'ranges') > tasker.max_batches() THEN
            problem := format('batches.ranges has %s ranges, more than the %s allowed',
                              jsonb_array_length(p_batches->'ranges'), tasker.max_batches());
            RETURN;
        END IF;
        SELECT min(i - 1) INTO v_bad
          FROM jsonb_array_elements(p_batches->'ranges') WITH ORDINALITY r(range, i)
         WHERE jsonb_typeof(r.range) IS DISTINCT FROM 'object'
            OR NOT (r.range ? 'start' AND r.range ? 'end');
        IF v_bad IS NOT NULL THEN
            problem := format('batches.ranges[%s] is not an object with "start" and "end"', v_bad);
            RETURN;
        END IF;
        ranges := p_batches->'ranges';
    ELSE
        problem := format('batches must hold "total", "ranges" or "none", holds %s', p_batches);
    END IF;
END $$;

-- Apply a batchable step's decision: create its batches' steps (pending),
-- their edges and their first transitions, and tell the convergence steps
-- which workers to collect. The caller holds the task's row lock; the
-- evaluation after it enqueues the batches. Returns NULL, or the problem
-- with the decision (nothing created).
CREATE FUNCTION tasker.create_batches(p_task uuid, p_step uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_config jsonb;
    v_worker jsonb;
    v_ranges jsonb;
    v_problem text;
    v_count integer;
    v_workers uuid[];
    v_names jsonb;
BEGIN
    SELECT ws.name, ws.results, ws.inputs, ws.batch_plan INTO s
      FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step;
    v_config := s.inputs->'batch_config';
    v_worker := s.batch_plan->'worker';
    IF v_worker IS NULL THEN
        RETURN 'the task was created without its batch plan (its template has no batch_worker for this step)';
    END IF;
    IF EXISTS (SELECT 1 FROM tasker.workflow_step_edges e
                 JOIN tasker.workflow_steps c ON c.workflow_step_uuid = e.to_step_uuid
                WHERE e.from_step_uuid = p_step AND c.step_type = 'batch_worker') THEN
        RETURN 'its batches were created already';
    END IF;
    SELECT r.ranges, r.problem INTO v_ranges, v_problem
      FROM tasker.batch_ranges(s.results->'batches', (v_config->>'batch_size')::bigint) r;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    v_count := jsonb_array_length(v_ranges);

    WITH created AS (
        INSERT INTO tasker.workflow_steps (task_uuid, name, step_type, handler_callable,
            handler_initialization, max_attempts, retryable, backoff, backoff_base_ms,
            max_backoff_ms, timeout_seconds, inputs)
        SELECT p_task, tasker.batch_step_name(v_worker->>'name', (r.i - 1)::integer), 'batch_worker',
               v_worker->'handler'->>'callable', coalesce(v_worker->'handler'->'initialization', '{}'),
               (v_worker->'retry'->>'max_attempts')::integer, (v_worker->'retry'->>'retryable')::boolean,
               v_worker->'retry'->>'backoff', (v_worker->'retry'->>'backoff_base_ms')::integer,
               (v_worker->'retry'->>'max_backoff_ms')::integer, (v_worker->>'timeout_seconds')::integer,
               jsonb_build_object('batch', jsonb_build_object(
                   'index', r.i - 1, 'count', v_count, 'batchable_step', s.name,
                   'cursor_field', v_config->>'cursor_field',
                   'batch_size', (v_config->>'batch_size')::bigint,
                   'parallelism', (v_config->>'parallelism')::integer,
                   'cursor', r.range))
          FROM jsonb_array_elements(v_ranges) WITH ORDINALITY r(range, i)
        RETURNING workflow_step_uuid, name, (inputs->'batch'->>'index')::integer AS index
    )
    SELECT array_agg(c.workflow_step_uuid ORDER BY c.index), coalesce(jsonb_agg(c.name ORDER BY c.index), '[]')
      INTO v_workers, v_names FROM created c;

    IF v_count > 0 THEN
        INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state,
                                                     sort_key, most_recent)
        SELECT w, NULL, 'pending', 1, true FROM unnest(v_workers) w;
        INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
        SELECT p_step, w FROM unnest(v_workers) w;
        INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
        SELECT w, c.workflow_step_uuid
          FROM unnest(v_workers) w
          CROSS JOIN tasker.workflow_steps c
         WHERE c.task_uuid = p_task AND s.batch_plan->'convergence' ? c.name;
    END IF;
    UPDATE tasker.workflow_steps c
       SET inputs = coalesce(c.inputs, '{}') || jsonb_build_object('batches', jsonb_strip_nulls(
               jsonb_build_object('workers', v_names,
                                  'none', CASE WHEN v_count = 0
                                               THEN coalesce(s.results->'batches'->>'none', 'no batches') END))),
           updated_at = clock_timestamp()
     WHERE c.task_uuid = p_task AND s.batch_plan->'convergence' ? c.name;
    RETURN NULL;
END $$;

-- Record a batch worker's progress under its claim: refused (false) when
-- the claim is no longer the step's (its lease lapsed, or it reported).
CREATE FUNCTION tasker.save_checkpoint(p_step uuid, p_claim_token uuid, p_cursor jsonb, p_partial jsonb)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_attempt integer;
    v_sequence integer;
BEGIN
    UPDATE tasker.workflow_steps ws
       SET checkpoint = jsonb_build_object(
               'cursor', p_cursor, 'partial', p_partial, 'attempt', ws.attempts,
               'sequence', coalesce((ws.checkpoint->>'sequence')::integer, 0) + 1),
           updated_at = clock_timestamp()
     WHERE ws.workflow_step_uuid = p_step AND ws.claim_token = p_claim_token
    RETURNING ws.attempts, (ws.checkpoint->>'sequence')::integer INTO v_attempt, v_sequence;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO tasker.workflow_step_checkpoints (workflow_step_uuid, sequence, attempt, cursor, partial)
    VALUES (p_step, v_sequence, v_attempt, p_cursor, p_partial);
    RETURN true;
END $$;

-- How many more of the batches of p_batchable (a step name) may be
-- enqueued now: parallelism minus those enqueued, running, reporting or
-- waiting to retry (a retry keeps its slot).
CREATE FUNCTION tasker.batch_slots_free(p_task uuid, p_batchable text, p_parallelism integer)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT p_parallelism - count(*)::integer
      FROM tasker.workflow_steps ws
      JOIN tasker.workflow_step_transitions t
        ON t.workflow_step_uuid = ws.workflow_step_uuid AND t.most_recent
     WHERE ws.task_uuid = p_task AND ws.step_type = 'batch_worker'
       AND ws.inputs->'batch'->>'batchable_step' = p_batchable
       AND t.to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                          'enqueued_as_error_for_orchestration', 'waiting_for_retry')
$$;

-- As in 0005, with each message built from one read of the steps, and a
-- batch's steps held back (left pending) beyond their parallelism.
CREATE OR REPLACE FUNCTION tasker.enqueue_steps(p_task uuid, p_steps uuid[], p_states tasker.step_state[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_messages jsonb[] := '{}';
    r record;
    v_group text;
    v_free jsonb := '{}';
BEGIN
    IF cardinality(p_steps) = 0 THEN
        RETURN 0;
    END IF;
    SELECT tasker.worker_queue_name(ns.name) INTO v_queue
      FROM tasker.tasks t
      JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
     WHERE t.task_uuid = p_task;
    FOR r IN SELECT u.step, u.state, ws.timeout_seconds,
                    CASE WHEN ws.step_type = 'batch_worker' THEN ws.inputs->'batch' END AS batch
               FROM unnest(p_steps, p_states) WITH ORDINALITY u(step, state, ord)
               JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = u.step
              ORDER BY u.ord
    LOOP
        IF r.batch IS NOT NULL AND r.state = 'pending' THEN
            v_group := r.batch->>'batchable_step';
            IF NOT v_free ? v_group THEN
                v_free := v_free || jsonb_build_object(v_group,
                    tasker.batch_slots_free(p_task, v_group, (r.batch->>'parallelism')::integer));
            END IF;
            CONTINUE WHEN (v_free->>v_group)::integer <= 0;
            v_free := v_free || jsonb_build_object(v_group, (v_free->>v_group)::integer - 1);
        END IF;
        IF tasker.try_transition_step(r.step, r.state, 'enqueued') THEN
            v_messages := v_messages || jsonb_build_object('task_uuid', p_task, 'step_uuid', r.step,
                                                           'timeout_s', r.timeout_seconds);
        END IF;
    END LOOP;
    IF cardinality(v_messages) > 0 THEN
        EXECUTE format('SELECT tasker.%I($1)', 'send_' || v_queue) USING v_messages;
        PERFORM pg_notify(v_queue, '');
    END IF;
    RETURN cardinality(v_messages);
END $$;

-- As in 0003, with a batchable step's decision applied when it completes,
-- and a batch worker that fails for good saying which batch it was.
CREATE OR REPLACE FUNCTION tasker.apply_step_result(p_step uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_delay bigint;
    v_at timestamptz;
    v_problem text;
    v_error jsonb;
BEGIN
    SELECT ws.*, t.to_state AS state INTO s
      FROM tasker.workflow_steps ws
      JOIN tasker.workflow_step_transitions t
        ON t.workflow_step_uuid = ws.workflow_step_uuid AND t.most_recent
     WHERE ws.workflow_step_uuid = p_step;
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

-- The failed steps of a task and their errors, for the record of why it
-- ended in error.
CREATE FUNCTION tasker.failed_steps(p_task uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('step', ws.name, 'error', ws.last_error)
                              ORDER BY ws.name), '[]')
      FROM tasker.workflow_steps ws
     WHERE ws.task_uuid = p_task AND tasker.step_state_of(ws.workflow_step_uuid) = 'error'
$$;

-- As in 0003, with the failed steps and their errors in the metadata of a
-- task blocked by failures.
CREATE OR REPLACE FUNCTION tasker.evaluate_task(p_task uuid)
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
            jsonb_build_object('failed_steps', c.failed_steps, 'failed', tasker.failed_steps(p_task)));
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

-- A batch worker is not given its batchable step's decision (`batches`):
-- its own range is in its inputs, and with thousands of batches every
-- claim would carry every other batch's range. The claim function is
-- written again for that; submit and send stay as 0005 wrote them (its
-- generator, renamed, writes them and the claim, which this one replaces).
ALTER FUNCTION tasker.worker_queue_functions_sql(text) RENAME TO worker_queue_functions_0005_sql;

CREATE FUNCTION tasker.worker_claim_function_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $outer$
SELECT format($fn$
CREATE OR REPLACE FUNCTION tasker.%3$I(p_margin integer, p_qty integer, p_worker text)
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
                   coalesce((SELECT jsonb_object_agg(p.name, CASE WHEN s.step_type = 'batch_worker'
                                                               THEN p.results - 'batches'
                                                               ELSE p.results END)
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
$fn$, p_queue, 'q_' || p_queue, 'claim_' || p_queue)
$outer$;

CREATE FUNCTION tasker.worker_queue_functions_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT tasker.worker_queue_functions_0005_sql(p_queue) || tasker.worker_claim_function_sql(p_queue)
$$;

DO $$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'worker\_%\_queue' LOOP
        EXECUTE tasker.worker_claim_function_sql(q);
    END LOOP;
END $$;
