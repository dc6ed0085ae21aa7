-- Evaluating a task: what its steps add up to (readiness, the execution
-- context), and what it does next: finish, enqueue the steps that became
-- ready, or wait. Run inside the transaction that applied its results
-- (results.sql) or retried its dead letter (staleness.sql), under the
-- task's row lock; task creation enqueues its root steps with
-- tasker.enqueue_steps and the execution context.

-- Their columns or arguments changed (readiness: the children of
-- completed steps, in_flight, parents_in_flight; evaluate_tasks: the
-- completed steps): CREATE OR REPLACE cannot change a function's result
-- type, and with other arguments it makes a second function.
DROP FUNCTION IF EXISTS tasker.tasks_execution_context(uuid[]);
DROP FUNCTION IF EXISTS tasker.tasks_step_readiness(uuid[]);
DROP FUNCTION IF EXISTS tasker.tasks_step_readiness(uuid[], uuid[]);
DROP FUNCTION IF EXISTS tasker.evaluate_tasks(uuid[]);

-- Decide what a task does next from its execution context: finalize it,
-- enqueue what became ready, or record that it waits. The caller holds
-- the task's row lock. When the task stays in steps_in_process and only
-- enqueues, no task transition is written: evaluating and enqueuing happen
-- inside this one transaction, so those states are never observable. A
-- task blocked by failures records the failed steps and their errors in
-- its transition's metadata.
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
    SELECT * INTO c FROM tasker.tasks_execution_context(ARRAY[p_task]);
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

-- Evaluate a batch's tasks (distinct; the caller holds their row locks).
-- The common cases go set-based over the whole batch: a task in
-- steps_in_process whose steps are still running needs nothing, one whose
-- steps became ready (none of them a batch worker, which is throttled) has
-- them enqueued by one UPDATE, one history INSERT and one send per worker
-- queue, and one whose steps are all done finishes (one UPDATE of the
-- tasks, their two transitions through evaluating_results, a notification
-- each). Every other task (waiting, retrying, blocked, holding batch
-- workers, or not in steps_in_process) goes through evaluate_task.
-- Per-task evaluation cost a dozen statements a task; this is a handful a
-- batch.
--
-- p_completed: steps of these tasks that the caller has just completed,
-- for tasks whose only news in this batch those completions are (no
-- other result, no retry's wake-up, no batch worker among them). Such a
-- task in steps_in_process was evaluated after its previous change, so
-- every step that was ready then was enqueued; the completions can only
-- have made their own children ready. So its children's readiness alone
-- decides it when a child became ready (enqueue it) or a child still
-- waits on a parent in flight (nothing to do: that parent's result will
-- evaluate the task again). Only a task that is neither (its last steps
-- completed, or something else to settle) has every step's readiness
-- computed. A linear step reads its one child instead of the whole task;
-- a fan-in, its join's parents.
--
-- The UPDATEs find their rows by key in arrays (`= ANY`), never by a join:
-- a join's plan, made once a session while the tables were tiny, walked
-- the whole of workflow_steps for every task once they had grown
-- (plans.rs tests it).
-- It runs under its caller's settings (process_step_results: one generic
-- plan, no sequential scans), which hold for the functions it calls.
CREATE OR REPLACE FUNCTION tasker.evaluate_tasks(p_tasks uuid[], p_completed uuid[])
RETURNS TABLE (task_uuid uuid, task_state tasker.task_state, enqueued integer, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    -- the tasks evaluated here, and for each (same index) what it needs
    v_tasks uuid[] := '{}';
    v_next_retry timestamptz[] := '{}';
    v_finishing uuid[] := '{}';
    v_finish_metadata jsonb[] := '{}';
    -- the steps to enqueue, all tasks' together, and their current states
    v_ready uuid[] := '{}';
    v_ready_states tasker.step_state[] := '{}';
    v_rest uuid[] := p_tasks;
    v_finished uuid[] := '{}';
    v_enqueued_tasks uuid[] := '{}';
    v_done_tasks uuid[];
    v_task uuid;
BEGIN
    -- Each statement below runs only when it has something to do: most of
    -- a statement's cost here is starting it (the executor's start-up and
    -- shutdown), not its rows.
    -- The tasks decided by the children of their completed steps.
    IF cardinality(p_completed) > 0 THEN
        FOR r IN
            SELECT c.task_uuid,
                   coalesce(array_agg(c.workflow_step_uuid ORDER BY c.name) FILTER (WHERE c.ready), '{}')
                       AS ready_step_uuids,
                   coalesce(array_agg(c.current_state ORDER BY c.name) FILTER (WHERE c.ready), '{}')
                       AS ready_step_states
              FROM tasker.tasks_step_readiness('{}', p_completed) c
             GROUP BY c.task_uuid
            HAVING (bool_or(c.ready) OR bool_or(c.parents_in_flight > 0))
               AND NOT bool_or(c.ready AND c.step_type = 'batch_worker')
               AND (SELECT t.state FROM tasker.tasks t WHERE t.task_uuid = c.task_uuid)
                   = 'steps_in_process'
        LOOP
            v_tasks := v_tasks || r.task_uuid;
            v_next_retry := v_next_retry || NULL::timestamptz;
            v_ready := v_ready || r.ready_step_uuids;
            v_ready_states := v_ready_states || r.ready_step_states;
        END LOOP;
        IF cardinality(v_tasks) = cardinality(p_tasks) THEN
            v_rest := '{}';
        ELSIF cardinality(v_tasks) > 0 THEN
            v_rest := ARRAY(SELECT t FROM unnest(p_tasks) t WHERE NOT (t = ANY (v_tasks)));
        END IF;
    END IF;

    -- The tasks whose steps are all done (complete, resolved manually or
    -- skipped) finish from one count of their steps: a chain's last step,
    -- a join with nothing after it. Every step's readiness, below, took
    -- three times as long for a 4-step task.
    IF cardinality(v_rest) > 0 THEN
        SELECT coalesce(array_agg(d.task_uuid), '{}'),
               coalesce(array_agg(jsonb_build_object('completed_steps', d.completed,
                                                     'skipped_steps', d.skipped)), '{}')
          INTO v_done_tasks, v_finish_metadata
          FROM (SELECT s.task_uuid,
                       (count(*) FILTER (WHERE s.state IN ('complete', 'resolved_manually')))::integer
                           AS completed,
                       (count(*) FILTER (WHERE s.state = 'cancelled'))::integer AS skipped,
                       bool_and(s.state IN ('complete', 'resolved_manually', 'cancelled')) AS all_done
                  FROM tasker.workflow_steps s
                 WHERE s.task_uuid = ANY (v_rest)
                 GROUP BY s.task_uuid) d
         WHERE d.all_done
           AND (SELECT t.state FROM tasker.tasks t WHERE t.task_uuid = d.task_uuid)
               = 'steps_in_process';
        IF cardinality(v_done_tasks) > 0 THEN
            v_tasks := v_tasks || v_done_tasks;
            v_next_retry := v_next_retry || array_fill(NULL::timestamptz, ARRAY[cardinality(v_done_tasks)]);
            v_finishing := v_done_tasks;
            v_rest := ARRAY(SELECT t FROM unnest(v_rest) t WHERE NOT (t = ANY (v_done_tasks)));
        END IF;
    END IF;

    -- Every other task: every step's readiness.
    IF cardinality(v_rest) > 0 THEN
        FOR r IN
            -- The task's row by key (a scalar subquery, see
            -- tasks_step_readiness).
            SELECT c.task_uuid, c.next_retry_at, c.ready_step_uuids, c.ready_step_states,
                   c.execution_status = 'all_complete' AS finishing,
                   c.completed_steps, c.skipped_steps
              FROM tasker.tasks_execution_context(v_rest) c
             WHERE c.execution_status IN ('processing', 'has_ready_steps', 'all_complete')
               AND c.ready_batch_workers = 0
               AND (SELECT t.state FROM tasker.tasks t WHERE t.task_uuid = c.task_uuid)
                   = 'steps_in_process'
        LOOP
            v_tasks := v_tasks || r.task_uuid;
            v_next_retry := v_next_retry || r.next_retry_at;
            IF r.finishing THEN
                v_finishing := v_finishing || r.task_uuid;
                v_finish_metadata := v_finish_metadata || jsonb_build_object(
                    'completed_steps', r.completed_steps, 'skipped_steps', r.skipped_steps);
            END IF;
            v_ready := v_ready || r.ready_step_uuids;
            v_ready_states := v_ready_states || r.ready_step_states;
        END LOOP;
    END IF;

    IF cardinality(v_finishing) > 0 THEN
        WITH finished AS (
            UPDATE tasker.tasks t
               SET state = 'complete', transitions = t.transitions + 2, complete = true,
                   completed_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE t.task_uuid = ANY (v_finishing) AND t.state = 'steps_in_process'
            RETURNING t.task_uuid, t.transitions
        ), history AS (
            INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key)
            SELECT f.task_uuid, 'steps_in_process'::tasker.task_state,
                   'evaluating_results'::tasker.task_state, '{}'::jsonb, f.transitions - 1
              FROM finished f
            UNION ALL
            SELECT f.task_uuid, 'evaluating_results', 'complete',
                   v_finish_metadata[array_position(v_finishing, f.task_uuid)], f.transitions
              FROM finished f
        )
        SELECT coalesce(array_agg(f.task_uuid ORDER BY f.task_uuid), '{}') INTO v_finished FROM finished f;
        FOREACH v_task IN ARRAY v_finished LOOP
            PERFORM pg_notify('tasker_task_finalized', v_task::text || ':complete');
        END LOOP;
    END IF;

    -- The ready steps of every task, one send per worker queue (each
    -- step's by key: scalar subqueries, see tasks_step_readiness).
    IF cardinality(v_ready) > 0 THEN
        FOR r IN
            WITH moved AS (
                UPDATE tasker.workflow_steps ws
                   SET state = 'enqueued', transitions = ws.transitions + 1
                 WHERE ws.workflow_step_uuid = ANY (v_ready)
                   AND ws.state = v_ready_states[array_position(v_ready, ws.workflow_step_uuid)]
                   AND ws.state IN ('pending', 'waiting_for_retry')
                RETURNING ws.task_uuid, ws.workflow_step_uuid, ws.transitions, ws.timeout_seconds,
                          array_position(v_ready, ws.workflow_step_uuid) AS ord
            ), history AS (
                INSERT INTO tasker.workflow_step_transitions
                    (workflow_step_uuid, from_state, to_state, sort_key)
                SELECT m.workflow_step_uuid, v_ready_states[m.ord], 'enqueued', m.transitions
                  FROM moved m
            )
            SELECT (SELECT t.worker_queue FROM tasker.tasks t WHERE t.task_uuid = m.task_uuid) AS queue,
                   array_agg(m.task_uuid ORDER BY m.ord) AS tasks,
                   array_agg(jsonb_build_object('task_uuid', m.task_uuid,
                       'step_uuid', m.workflow_step_uuid, 'timeout_s', m.timeout_seconds)
                       ORDER BY m.ord) AS messages
              FROM moved m
             GROUP BY 1
        LOOP
            PERFORM tasker.send_to_worker_queue(r.queue, r.messages);
            v_enqueued_tasks := v_enqueued_tasks || r.tasks;
        END LOOP;
    END IF;

    RETURN QUERY
    SELECT t.task, CASE WHEN t.task = ANY (v_finished) THEN 'complete'
                        ELSE 'steps_in_process' END::tasker.task_state,
           cardinality(array_positions(v_enqueued_tasks, t.task)), v_next_retry[t.i]
      FROM unnest(v_tasks) WITH ORDINALITY t(task, i);
    FOREACH v_task IN ARRAY p_tasks LOOP
        CONTINUE WHEN v_task = ANY (v_tasks);
        RETURN QUERY SELECT * FROM tasker.evaluate_task(v_task);
    END LOOP;
END $$;

-- Move a task from its current state through evaluating_results to p_to.
CREATE OR REPLACE FUNCTION tasker.settle_task(
    p_task uuid, p_current tasker.task_state, p_to tasker.task_state, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_current <> 'evaluating_results' THEN
        PERFORM tasker.transition_task(p_task, p_current, 'evaluating_results');
    END IF;
    PERFORM tasker.transition_task(p_task, 'evaluating_results', p_to, p_metadata);
END $$;

-- The failed steps of a task and their errors, for the record of why it
-- ended in error.
CREATE OR REPLACE FUNCTION tasker.failed_steps(p_task uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('step', ws.name, 'error', ws.last_error)
                              ORDER BY ws.name), '[]')
      FROM tasker.workflow_steps ws
     WHERE ws.task_uuid = p_task AND ws.state = 'error'
$$;

-- Readiness of every step of the given tasks, and of the children of the
-- given steps (p_children_of: steps just completed, whose children are
-- the only steps their completion can make ready). p_done: steps to count
-- as complete whatever their state (a statement that completes them reads
-- them as they were before: statements/complete_steps.sql). A step is ready when
-- it is pending or waiting for retry, every parent is complete, resolved
-- manually or skipped (cancelled by a decision), it has attempts left and
-- its backoff has passed. Set-returning SQL, inlined into its callers'
-- statements (a single SELECT, STABLE), so it is planned with them.
-- Every table is read by key: the steps by their tasks or uuids, then for
-- each step its parents' edges and each parent's state (scalar
-- subqueries, which PostgreSQL runs as lookups by the outer row's key).
-- Joined to the steps instead, the edges were read whole by plans made on
-- tiny tables (plans.rs).
CREATE OR REPLACE FUNCTION tasker.tasks_step_readiness(
    p_tasks uuid[], p_children_of uuid[] DEFAULT '{}', p_done uuid[] DEFAULT '{}')
RETURNS TABLE (
    task_uuid          uuid,
    workflow_step_uuid uuid,
    name               text,
    current_state      tasker.step_state,
    total_parents      integer,
    completed_parents  integer,
    -- parents on their way through a worker (tasker.step_in_flight)
    parents_in_flight  integer,
    in_flight          boolean,
    attempts           integer,
    max_attempts       integer,
    next_retry_at      timestamptz,
    ready              boolean,
    step_type          text
)
LANGUAGE sql STABLE AS $$
    SELECT s.task_uuid, s.workflow_step_uuid, s.name, s.state,
           p.parents, p.done, p.in_flight, tasker.step_in_flight(s.state),
           s.attempts, s.max_attempts, s.next_retry_at,
           s.state IN ('pending', 'waiting_for_retry')
             AND p.done = p.parents
             AND s.attempts < s.max_attempts
             AND (s.next_retry_at IS NULL OR s.next_retry_at <= clock_timestamp()),
           s.step_type
      FROM tasker.workflow_steps s
      -- The parents counted once a step (LATERAL: an aggregate, so never
      -- pulled up into a join); as a scalar subquery whose array was
      -- indexed three times, it was run once per index.
     CROSS JOIN LATERAL (
        SELECT count(*)::integer AS parents,
               (count(*) FILTER (WHERE pe.state IN ('complete', 'resolved_manually', 'cancelled')
                                    OR pe.step = ANY (p_done)))::integer AS done,
               (count(*) FILTER (WHERE tasker.step_in_flight(pe.state)
                                   AND NOT pe.step = ANY (p_done)))::integer AS in_flight
          FROM (SELECT e.from_step_uuid AS step,
                       (SELECT p.state FROM tasker.workflow_steps p
                         WHERE p.workflow_step_uuid = e.from_step_uuid) AS state
                  FROM tasker.workflow_step_edges e
                 WHERE e.to_step_uuid = s.workflow_step_uuid
                -- kept a subquery, so each parent is looked up once
                OFFSET 0) pe
     ) p
     WHERE s.task_uuid = ANY (p_tasks)
        OR s.workflow_step_uuid = ANY (ARRAY(SELECT e.to_step_uuid FROM tasker.workflow_step_edges e
                                              WHERE e.from_step_uuid = ANY (p_children_of)))
$$;

-- What each of the given tasks' steps add up to, and what orchestration
-- should do next, one row a task (a task without steps has total 0).
-- execution_status is one of: all_complete, has_ready_steps, processing,
-- waiting_for_retry, blocked_by_failures, waiting_for_dependencies.
CREATE OR REPLACE FUNCTION tasker.tasks_execution_context(p_tasks uuid[])
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
    ready_step_states  tasker.step_state[],
    -- how many of them are batch workers (throttled by their batch)
    ready_batch_workers integer
)
LANGUAGE sql STABLE AS $$
    WITH r AS (SELECT * FROM tasker.tasks_step_readiness(p_tasks)),
    c AS (
        SELECT t.task_uuid,
               count(r.workflow_step_uuid)::integer AS total,
               (count(*) FILTER (WHERE r.current_state = 'pending'))::integer AS pending,
               (count(*) FILTER (WHERE r.ready))::integer AS ready,
               (count(*) FILTER (WHERE r.in_flight))::integer AS in_flight,
               (count(*) FILTER (WHERE r.current_state = 'waiting_for_retry'))::integer AS retrying,
               (count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')))::integer AS completed,
               (count(*) FILTER (WHERE r.current_state = 'error'))::integer AS failed,
               (count(*) FILTER (WHERE r.current_state = 'cancelled'))::integer AS skipped,
               min(r.next_retry_at) FILTER (WHERE r.current_state = 'waiting_for_retry') AS next_retry_at,
               coalesce(array_agg(r.workflow_step_uuid ORDER BY r.name) FILTER (WHERE r.ready), '{}') AS ready_uuids,
               coalesce(array_agg(r.current_state ORDER BY r.name) FILTER (WHERE r.ready), '{}') AS ready_states,
               (count(*) FILTER (WHERE r.ready AND r.step_type = 'batch_worker'))::integer AS ready_batch_workers
          FROM unnest(p_tasks) t(task_uuid)
          LEFT JOIN r ON r.task_uuid = t.task_uuid
         GROUP BY t.task_uuid
    )
    SELECT c.task_uuid, c.total, c.pending, c.ready, c.in_flight, c.retrying, c.completed, c.failed,
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
           c.ready_uuids, c.ready_states, c.ready_batch_workers
      FROM c
$$;

-- Enqueue the given ready steps (p_states: the state each is in now) on
-- the task's namespace queue, one send for the batch (the queue's own
-- send_ function, worker_queues.sql). Each message carries its step's
-- timeout, which sizes the claim's lease; the messages are built from one
-- read of the steps. A batch's steps beyond their parallelism are held
-- back (left pending). The caller holds the task's row lock. Returns how
-- many were enqueued.
CREATE OR REPLACE FUNCTION tasker.enqueue_steps(p_task uuid, p_steps uuid[], p_states tasker.step_state[])
RETURNS integer
LANGUAGE plpgsql
-- One plan for every call, by key (see worker_queues.sql).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
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
    SELECT t.worker_queue INTO v_queue FROM tasker.tasks t WHERE t.task_uuid = p_task;
    IF NOT EXISTS (SELECT 1 FROM tasker.workflow_steps ws
                    WHERE ws.workflow_step_uuid = ANY (p_steps) AND ws.step_type = 'batch_worker') THEN
        -- No batch to throttle (the common case): every step in one
        -- compare-and-swap UPDATE and one history INSERT.
        WITH moved AS (
            UPDATE tasker.workflow_steps ws
               SET state = 'enqueued', transitions = ws.transitions + 1
             WHERE ws.workflow_step_uuid = ANY (p_steps)
               AND ws.state = p_states[array_position(p_steps, ws.workflow_step_uuid)]
               AND ws.state IN ('pending', 'waiting_for_retry')
            RETURNING ws.workflow_step_uuid, ws.transitions, ws.timeout_seconds,
                      array_position(p_steps, ws.workflow_step_uuid) AS ord
        ), history AS (
            INSERT INTO tasker.workflow_step_transitions
                (workflow_step_uuid, from_state, to_state, sort_key)
            SELECT m.workflow_step_uuid, p_states[m.ord], 'enqueued', m.transitions FROM moved m
        )
        SELECT coalesce(array_agg(jsonb_build_object('task_uuid', p_task,
                   'step_uuid', m.workflow_step_uuid, 'timeout_s', m.timeout_seconds)
                   ORDER BY m.ord), '{}')
          INTO v_messages FROM moved m;
    ELSE
        -- Batch workers beyond their batch's parallelism are held back.
        FOR r IN SELECT u.step, u.state, ws.timeout_seconds,
                        CASE WHEN ws.step_type = 'batch_worker' THEN ws.inputs->'batch' END AS batch
                   FROM unnest(p_steps, p_states) WITH ORDINALITY u(step, state, ord)
                   JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = u.step
                        -- by key whatever the join's plan
                        AND ws.workflow_step_uuid = ANY (p_steps)
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
    END IF;
    PERFORM tasker.send_to_worker_queue(v_queue, v_messages);
    RETURN cardinality(v_messages);
END $$;

-- Replaced by create_task's own statement (create_task.sql), and by the
-- array forms above (called with ARRAY[task] for one task).
DROP FUNCTION IF EXISTS tasker.enqueue_ready_steps(uuid);
DROP FUNCTION IF EXISTS tasker.task_execution_context(uuid);
DROP FUNCTION IF EXISTS tasker.step_readiness(uuid);
