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
--
-- Also in other files: tasker.create_task hands a template with batch steps
-- to tasker.insert_batch_task_steps (create_task.sql); tasker.enqueue_steps
-- holds batches back beyond their parallelism (evaluate.sql);
-- tasker.apply_step_result calls tasker.create_batches (results.sql); a
-- batch worker's claim is not given its batchable step's `batches`
-- (worker_queues.sql).

-- Most batches one batchable step may make (template::MAX_BATCHES).
CREATE OR REPLACE FUNCTION tasker.max_batches() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 10000 $$;

-- Batch `p_index` of worker template `p_worker`: process_rows_000, ...
-- (template::worker_step_name).
CREATE OR REPLACE FUNCTION tasker.batch_step_name(p_worker text, p_index integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_worker || '_' || lpad(p_index::text, greatest(3, length(p_index::text)), '0')
$$;

-- The steps, edges and first transitions of a new task whose template has
-- batch steps (tasker.create_task does the others itself, on the hot path).
CREATE OR REPLACE FUNCTION tasker.insert_batch_task_steps(p_task uuid, p_template jsonb) RETURNS void
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

    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key)
    SELECT ws.workflow_step_uuid, NULL, 'pending', 1
      FROM tasker.workflow_steps ws WHERE ws.task_uuid = p_task;
END $$;

-- The ranges of a batchable step's decision (its result's `batches`:
-- {"total": n}, {"ranges": [...]} or {"none": "why"}), or why the decision
-- is not one. p_size is the step's batch_size.
CREATE OR REPLACE FUNCTION tasker.batch_ranges(p_batches jsonb, p_size bigint, OUT ranges jsonb, OUT problem text)
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
CREATE OR REPLACE FUNCTION tasker.create_batches(p_task uuid, p_step uuid) RETURNS text
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
                WHERE e.from_step_uuid = p_step
                  AND (SELECT c.step_type FROM tasker.workflow_steps c
                        WHERE c.workflow_step_uuid = e.to_step_uuid) = 'batch_worker') THEN
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
                                                     sort_key)
        SELECT w, NULL, 'pending', 1 FROM unnest(v_workers) w;
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

-- How many more of the batches of p_batchable (a step name) may be
-- enqueued now: parallelism minus those enqueued, running, reporting or
-- waiting to retry (a retry keeps its slot).
CREATE OR REPLACE FUNCTION tasker.batch_slots_free(p_task uuid, p_batchable text, p_parallelism integer)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT p_parallelism - count(*)::integer
      FROM tasker.workflow_steps ws
     WHERE ws.task_uuid = p_task AND ws.step_type = 'batch_worker'
       AND ws.inputs->'batch'->>'batchable_step' = p_batchable
       AND ws.state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                          'enqueued_as_error_for_orchestration', 'waiting_for_retry')
$$;

-- Record a batch worker's progress under its claim: refused (false) when
-- the claim is no longer the step's (its lease lapsed, or it reported).
CREATE OR REPLACE FUNCTION tasker.save_checkpoint(p_step uuid, p_claim_token uuid, p_cursor jsonb, p_partial jsonb)
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
