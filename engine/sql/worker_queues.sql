-- Each worker queue's own functions: claim_<queue> (the worker's claim)
-- and submit_<queue> (the worker's results); tasker.send_to_worker_queue
-- (enqueuing steps on any of them); the generators that write them,
-- tasker.create_worker_queue, and leases. This file is applied last: it
-- ends by writing the functions of every existing worker queue again, so
-- a change here reaches queues made before.
--
-- Why per-queue functions. The queues are pgmq queues (created by
-- pgmq.create, readable by pgmq's tools), but pgmq's own functions build
-- their SQL with format() and literals on every call, which cost about
-- 0.2 ms a call here; generic wrappers doing the same operations on pgmq's
-- tables with EXECUTE cost 0.15-0.19 ms a call for statements that run in
-- 0.02-0.03 ms, because EXECUTE plans its statement afresh every time
-- (pg_stat_statements, track = all, linear scenario: about 0.5 ms of the
-- ~3.9 ms of server time a step took). So each worker queue gets its own
-- claim and submit functions, whose statements name the queue's table
-- directly and so keep cached plans; the worker calls them by name
-- (queue.rs queue_function). Orchestration sends through one dispatcher,
-- tasker.send_to_worker_queue, written again whenever a queue is made,
-- with a static INSERT for each queue: an EXECUTE there (of a per-queue
-- send_ function, as it was) cost about 30 us a send, 5% of a linear
-- task's server time under pgbench (engine/benches/sql/linear_cycle.sql).
--
-- Leases and fencing. A claim is a lease: the claimed message stays hidden
-- for the step's timeout_seconds plus a margin (the worker's
-- claim_lease_margin_s). The worker enforces the timeout, so a live worker
-- reports before the lease ends. A worker that dies lets the lease lapse:
-- the message is visible again, and the next claim of it counts the
-- interrupted attempt (an audit row and last_error of type ClaimExpired)
-- and runs the step again as a new attempt, or, with no attempts left,
-- fails the step with that reason. Every claim gets a token. A result is
-- recorded only when it carries the step's current token (fencing): a
-- worker paused past its lease, whose step was claimed again meanwhile,
-- cannot overwrite the newer attempt. A message that is not what its queue
-- carries is rejected (tasker.reject_message, queues.sql).
--
-- Batches. A claim and a batch of results are set-based: one UPDATE of
-- all their steps and one INSERT of their history rows, not a statement
-- per step; the rare cases (a lapsed lease, a duplicate or bad message, a
-- refused result) keep a loop of their own. Their statements take arrays,
-- and find steps by key (`= ANY (array)`), so the plan is an index scan
-- whatever size the planner guesses for the array. The functions use one
-- generic plan for every call (plan_cache_mode): custom plans of these
-- statements, made afresh on every call, cost more to plan than to run
-- (about 0.4 ms a claim in the profile). And they never scan a table
-- whole (enable_seqscan = off): a generic plan is made once a session,
-- often while the tables are still small, when a sequential scan looks
-- cheaper than the index, and then kept as the tables grow (the profile
-- showed the claim reading 70 pages of workflow_steps for one step).
-- And they never JIT-compile (jit = off): JIT is decided by the plan's
-- estimated cost and paid on every execution. With a big table's row
-- count known but no column statistics yet (after a VACUUM and before
-- its ANALYZE, or after a restore), the estimate of the full evaluation
-- of one task passed 13 million: 220 ms of compilation for a statement
-- that runs in 0.3 ms, and throughput at 400 tasks/s fell to 70.

-- The lease of a claim of p_step lapsed without a result: its worker died
-- or stalled. Count the interrupted attempt; then either put the step back
-- to enqueued to be claimed as a new attempt (returns 'reclaim'), or, with
-- no attempts left, fail it with the reason and tell orchestration
-- ('failed'; the caller deletes the message). NULL: the step was no longer
-- in progress (its result landed meanwhile), nothing done. A lost worker
-- re-runs a step whatever its `retryable`: delivery is at least once,
-- bounded by max_attempts.
CREATE OR REPLACE FUNCTION tasker.expire_claim(p_step uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_worker text;
    v_retry boolean;
    v_error jsonb;
BEGIN
    SELECT ws.task_uuid, ws.attempts, ws.max_attempts, ws.timeout_seconds, ws.last_attempted_at
      INTO s FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step;
    SELECT t.metadata->>'worker' INTO v_worker
      FROM tasker.workflow_steps ws
      JOIN tasker.workflow_step_transitions t
        ON t.workflow_step_uuid = ws.workflow_step_uuid AND t.sort_key = ws.transitions
     WHERE ws.workflow_step_uuid = p_step;
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

-- The refusal of a worker's plain submit (statements/submit_results.sql):
-- raised when an entry of its batch is not its step's current claim, so
-- that statement changes nothing and the submitter sends the batch to the
-- queue's submit_ function, which refuses such entries one by one.
CREATE OR REPLACE FUNCTION tasker.decline_submit(p_entries integer, p_recorded integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% of % results are not their step''s current claim',
        p_entries - p_recorded, p_entries
        USING ERRCODE = 'TK005',
              HINT = 'the submitter sends the batch to tasker.submit_<queue>, which refuses them';
END $$;

-- Its earlier name, when it also wrote a claim function.
DROP FUNCTION IF EXISTS tasker.worker_queue_functions_0005_sql(text);

-- The CREATE statement of one worker queue's submit function: %1$L is
-- the queue's name, %2$I its pgmq table, %4$I the submit_ function.
CREATE OR REPLACE FUNCTION tasker.worker_result_functions_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $outer$
SELECT format($fn$
CREATE OR REPLACE FUNCTION tasker.%4$I(p_results jsonb)
RETURNS TABLE (workflow_step_uuid uuid, accepted boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $body$
#variable_conflict use_column
DECLARE
    -- the entries, one array a field, index for index
    v_steps uuid[];
    v_msgs bigint[];
    -- each entry's claim token: the claim it reports on
    v_tokens uuid[];
    v_success boolean[];
    v_results jsonb[];
    v_errors jsonb[];
    v_times bigint[];
    v_workers text[];
    v_taken pgmq.%2$I[];
    v_done integer[];
    v_done_msgs bigint[];
    v_message pgmq.%2$I;
BEGIN
    -- The entries taken apart in one pass, each field typed as it is read:
    -- the worker writes them (worker/results.rs), so a field that is not
    -- of its type is an error of the whole call, as a wrong argument is.
    -- (Each field of the array's elements aggregated in entry order, and
    -- the uuids checked by regular expression, cost 7 µs more a call.)
    SELECT array_agg(x.step_uuid), array_agg(x.msg_id), array_agg(x.claim_token),
           array_agg(coalesce(x.success, false)), array_agg(x.result), array_agg(x.error),
           array_agg(x.execution_time_us), array_agg(x.worker_id)
      INTO v_steps, v_msgs, v_tokens, v_success, v_results, v_errors, v_times, v_workers
      FROM jsonb_to_recordset(p_results) x(step_uuid uuid, msg_id bigint, claim_token uuid,
               success boolean, result jsonb, error jsonb, execution_time_us bigint,
               worker_id text);
    IF v_steps IS NULL THEN
        RETURN;
    END IF;

    -- The claims' messages first, in the order a claim locks: while it is
    -- held, a lease cannot lapse into another worker's hands, so the token
    -- compared next stays the step's token. Deleting it takes that lock
    -- and is what an accepted result needs anyway (a lock alone would cost
    -- a WAL record per result); a refused result puts it back below when
    -- it is still somebody's claim.
    WITH taken AS (
        DELETE FROM pgmq.%2$I q WHERE q.msg_id = ANY (v_msgs) RETURNING q
    )
    SELECT array_agg(taken.q) INTO v_taken FROM taken;

    -- Every result that reports on its step's current claim (its token is
    -- the step's: the compare-and-swap) in one UPDATE, and its history row,
    -- audit row and orchestration message each in one INSERT. The steps
    -- are found by key (= ANY), whatever the planner makes of the join.
    WITH recorded AS (
        UPDATE tasker.workflow_steps ws
           SET state = CASE WHEN ok.success THEN 'enqueued_for_orchestration'
                            ELSE 'enqueued_as_error_for_orchestration' END::tasker.step_state,
               transitions = ws.transitions + 1,
               -- a result of JSON null is stored as such (jsonb_to_recordset
               -- reads it as SQL NULL)
               results = CASE WHEN ok.success THEN coalesce(ok.result, 'null') ELSE ws.results END,
               last_error = CASE WHEN ok.success THEN NULL ELSE ok.error END,
               claim_msg_id = NULL, claim_token = NULL, updated_at = clock_timestamp()
          FROM unnest(v_steps, v_tokens, v_success, v_results, v_errors, v_times, v_workers)
               WITH ORDINALITY ok(step, token, success, result, error, us, worker, entry)
         WHERE ws.workflow_step_uuid = ANY (v_steps) AND ws.workflow_step_uuid = ok.step
           AND ws.state = 'in_progress' AND ws.claim_token = ok.token
        RETURNING ws.workflow_step_uuid AS step, ok.entry::integer AS entry, ok.success, ok.error,
                  ok.us, ok.worker, ws.task_uuid, ws.attempts, ws.state, ws.transitions
    ), history AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, metadata, sort_key)
        SELECT a.step, 'in_progress', a.state,
               jsonb_build_object('worker', a.worker, 'execution_time_us', a.us), a.transitions
          FROM recorded a
    ), audit AS (
        INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, task_uuid, attempt,
            success, execution_time_us, worker_id, error_type, error_message, retryable)
        SELECT a.step, a.task_uuid, a.attempts, a.success, a.us, a.worker,
               a.error->>'error_type', a.error->>'message', (a.error->>'retryable')::boolean
          FROM recorded a
    ), to_orchestration AS (
        INSERT INTO pgmq.q_orchestration_step_results (vt, message)
        SELECT clock_timestamp(), jsonb_build_object('task_uuid', a.task_uuid, 'step_uuid', a.step)
          FROM recorded a
    )
    SELECT coalesce(array_agg(a.entry), '{}'), coalesce(array_agg(v_msgs[a.entry]), '{}')
      INTO v_done, v_done_msgs FROM recorded a;

    -- Refused entries (rare): the claim lapsed and was taken over, or the
    -- step moved on. A message deleted above that is still a claim's (a
    -- newer claim holds it, or the step waits to be claimed again after a
    -- claim lost with an asynchronous commit) is put back as it was;
    -- otherwise it is done with.
    IF cardinality(v_done) < cardinality(v_steps) THEN
        FOR i IN 1 .. cardinality(v_steps) LOOP
            CONTINUE WHEN i = ANY (v_done) OR v_msgs[i] = ANY (v_done_msgs);
            SELECT t.* INTO v_message FROM unnest(v_taken) t WHERE t.msg_id = v_msgs[i];
            IF FOUND AND EXISTS (
                    SELECT 1 FROM tasker.workflow_steps ws
                     WHERE ws.workflow_step_uuid = v_steps[i]
                       AND (ws.claim_msg_id = v_msgs[i] OR ws.state = 'enqueued')) THEN
                INSERT INTO pgmq.%2$I OVERRIDING SYSTEM VALUE SELECT v_message.*;
            END IF;
            v_done_msgs := v_done_msgs || v_msgs[i];
        END LOOP;
    END IF;

    -- Each entry's row, in entry order, without a statement.
    FOR i IN 1 .. cardinality(v_steps) LOOP
        workflow_step_uuid := v_steps[i];
        accepted := i = ANY (v_done);
        RETURN NEXT;
    END LOOP;
    IF cardinality(v_done) > 0 THEN
        PERFORM pg_notify('orchestration_step_results', '');
    END IF;
END $body$;
$fn$, p_queue, 'q_' || p_queue, 'claim_' || p_queue, 'submit_' || p_queue)
$outer$;
-- The CREATE statement of one worker queue's claim function. A batch
-- worker is not given its batchable step's decision (`batches`): its own
-- range is in its inputs, and with thousands of batches every claim would
-- carry every other batch's range.
CREATE OR REPLACE FUNCTION tasker.worker_claim_function_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $outer$
SELECT format($fn$
CREATE OR REPLACE FUNCTION tasker.%3$I(p_margin integer, p_qty integer, p_worker text)
RETURNS TABLE (
    msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, step_name text, step_type text,
    handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
    dependency_results jsonb, attempt integer, timeout_seconds integer, child_step_names text[],
    claim_token uuid
)
LANGUAGE plpgsql
-- One plan for every call, by key (see the file's header).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $body$
#variable_conflict use_column
DECLARE
    v_msgs bigint[];
    v_messages jsonb[];
    v_steps uuid[];
    v_claimed_msgs bigint[];
    v_claimed_steps uuid[];
    v_step uuid;
    v_held bigint;
    v_expired text;
BEGIN
    -- The lease: hidden for the step's timeout (carried by the message,
    -- see tasker.enqueue_steps; 30 s, the template default, for a message
    -- without it) plus the margin. Not looked up here: a subquery in this
    -- statement, which is planned afresh on every call (its generic plan
    -- is far worse), cost 0.1 ms a claim in planning alone.
    -- The picked messages are updated by key, from an array (ARRAY() is
    -- run once, before the UPDATE): joined, a plan made on a tiny queue
    -- table read it whole.
    WITH leased AS (
        UPDATE pgmq.%2$I q
           SET vt = clock_timestamp() + make_interval(secs => p_margin +
                   CASE WHEN q.message->>'timeout_s' ~ '^[0-9]{1,7}$'
                        THEN (q.message->>'timeout_s')::integer ELSE 30 END),
               read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
         WHERE q.msg_id = ANY (ARRAY(
                   SELECT p.msg_id FROM pgmq.%2$I p WHERE p.vt <= clock_timestamp()
                    ORDER BY p.msg_id LIMIT p_qty FOR UPDATE SKIP LOCKED))
        RETURNING q.msg_id, q.message
    )
    SELECT array_agg(l.msg_id ORDER BY l.msg_id), array_agg(l.message ORDER BY l.msg_id),
           array_agg(tasker.as_uuid(l.message->>'step_uuid') ORDER BY l.msg_id)
      INTO v_msgs, v_messages, v_steps FROM leased l;
    IF v_msgs IS NULL THEN
        RETURN;
    END IF;

    -- Every leased step that waits to be claimed is claimed at once: one
    -- compare-and-swap UPDATE for the batch (state, attempt, claim), one
    -- INSERT of their history rows.
    -- A step with two messages in the batch is claimed under the first.
    WITH claimed AS (
        UPDATE tasker.workflow_steps s
           SET state = 'in_progress', transitions = s.transitions + 1,
               attempts = s.attempts + 1, last_attempted_at = clock_timestamp(),
               claim_msg_id = v_msgs[array_position(v_steps, s.workflow_step_uuid)],
               claim_token = gen_random_uuid(), updated_at = clock_timestamp()
         WHERE s.workflow_step_uuid = ANY (v_steps) AND s.state = 'enqueued'
        RETURNING s.claim_msg_id AS msg_id, s.workflow_step_uuid, s.transitions
    ), history AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, metadata, sort_key)
        SELECT c.workflow_step_uuid, 'enqueued', 'in_progress',
               jsonb_build_object('worker', p_worker), c.transitions
          FROM claimed c
    )
    SELECT coalesce(array_agg(c.msg_id), '{}'), coalesce(array_agg(c.workflow_step_uuid), '{}')
      INTO v_claimed_msgs, v_claimed_steps FROM claimed c;

    -- The rest (rare): a message whose step is not waiting to be claimed.
    IF cardinality(v_claimed_msgs) < cardinality(v_msgs) THEN
        FOR i IN 1 .. cardinality(v_msgs) LOOP
            CONTINUE WHEN v_msgs[i] = ANY (v_claimed_msgs);
            v_step := v_steps[i];
            SELECT ws.claim_msg_id INTO v_held FROM tasker.workflow_steps ws
             WHERE ws.workflow_step_uuid = v_step;
            IF NOT FOUND THEN
                PERFORM tasker.reject_message(%1$L, v_msgs[i], v_messages[i],
                    CASE WHEN v_step IS NULL THEN 'step_uuid is missing or not a uuid'
                         ELSE 'no such step' END);
                DELETE FROM pgmq.%2$I q WHERE q.msg_id = v_msgs[i];
            ELSIF v_held = v_msgs[i] AND tasker.step_state_of(v_step) = 'in_progress' THEN
                -- This claim's own message is visible again: its lease lapsed.
                v_expired := tasker.expire_claim(v_step);
                IF v_expired = 'reclaim' AND tasker.try_transition_step(v_step, 'enqueued',
                        'in_progress', jsonb_build_object('worker', p_worker, 'reclaimed', true)) THEN
                    UPDATE tasker.workflow_steps s
                       SET attempts = s.attempts + 1, last_attempted_at = clock_timestamp(),
                           claim_msg_id = v_msgs[i], claim_token = gen_random_uuid(),
                           updated_at = clock_timestamp()
                     WHERE s.workflow_step_uuid = v_step;
                    v_claimed_msgs := v_claimed_msgs || v_msgs[i];
                    v_claimed_steps := v_claimed_steps || v_step;
                ELSIF v_expired = 'failed' THEN
                    DELETE FROM pgmq.%2$I q WHERE q.msg_id = v_msgs[i];
                END IF;
            ELSE
                -- A duplicate delivery of a step claimed or done: dropped unrun.
                DELETE FROM pgmq.%2$I q WHERE q.msg_id = v_msgs[i];
            END IF;
        END LOOP;
    END IF;

    RETURN QUERY
    SELECT s.claim_msg_id, s.task_uuid, s.workflow_step_uuid, s.name, s.step_type,
           s.handler_callable, s.handler_initialization, s.inputs,
           (SELECT t.context FROM tasker.tasks t WHERE t.task_uuid = s.task_uuid),
           -- Parents and children by key, each step's edges and then each
           -- step at the other end (scalar subqueries: lookups by the outer
           -- row's key, whatever the tables' statistics say).
           coalesce((SELECT jsonb_object_agg(d.key, d.value)
                       FROM tasker.workflow_step_edges e
                      CROSS JOIN LATERAL jsonb_each(
                            (SELECT jsonb_build_object(p.name, CASE WHEN s.step_type = 'batch_worker'
                                                               THEN p.results - 'batches'
                                                               ELSE p.results END)
                               FROM tasker.workflow_steps p
                              WHERE p.workflow_step_uuid = e.from_step_uuid)) d
                      WHERE e.to_step_uuid = s.workflow_step_uuid), '{}'::jsonb),
           s.attempts, s.timeout_seconds,
           coalesce((SELECT array_agg(c.name ORDER BY c.name)
                       FROM (SELECT (SELECT ch.name FROM tasker.workflow_steps ch
                                      WHERE ch.workflow_step_uuid = e.to_step_uuid) AS name
                               FROM tasker.workflow_step_edges e
                              WHERE e.from_step_uuid = s.workflow_step_uuid) c), '{}'::text[]),
           s.claim_token
      FROM tasker.workflow_steps s
     WHERE s.workflow_step_uuid = ANY (v_claimed_steps)
     ORDER BY s.claim_msg_id;
END $body$;
$fn$, p_queue, 'q_' || p_queue, 'claim_' || p_queue)
$outer$;
-- The CREATE statements of all of one worker queue's functions, run by
-- tasker.create_worker_queue and at the end of this file.
CREATE OR REPLACE FUNCTION tasker.worker_queue_functions_sql(p_queue text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT tasker.worker_result_functions_sql(p_queue) || tasker.worker_claim_function_sql(p_queue)
$$;

-- The CREATE statement of tasker.send_to_worker_queue(queue, messages):
-- send step messages to a worker queue and wake its workers (nothing when
-- there are none), one static INSERT for each worker queue that exists.
CREATE OR REPLACE FUNCTION tasker.send_function_sql() RETURNS text
LANGUAGE sql STABLE AS $outer$
WITH branches AS (
    SELECT string_agg(format(
               E'    WHEN %L THEN\n        INSERT INTO pgmq.%I (vt, message) SELECT clock_timestamp(), m FROM unnest(p_messages) m;',
               m.queue_name, 'q_' || m.queue_name), E'\n' ORDER BY m.queue_name) AS text
      FROM pgmq.meta m
     WHERE m.queue_name LIKE 'worker\_%\_queue'
), unknown AS (
    SELECT $$RAISE EXCEPTION 'no worker queue %', p_queue USING ERRCODE = 'undefined_table';$$ AS text
)
SELECT format($fn$
CREATE OR REPLACE FUNCTION tasker.send_to_worker_queue(p_queue text, p_messages jsonb[])
RETURNS void
LANGUAGE plpgsql AS $body$
BEGIN
    IF p_queue IS NULL OR cardinality(p_messages) = 0 THEN
        RETURN;
    END IF;
%s
    PERFORM pg_notify(p_queue, '');
END $body$;
$fn$, CASE WHEN b.text IS NULL THEN '    ' || u.text
           ELSE E'    CASE p_queue\n' || b.text || E'\n    ELSE\n        ' || u.text || E'\n    END CASE;' END)
  FROM branches b, unknown u
$outer$;

-- Create a worker queue (a pgmq queue) and its functions, unless they
-- exist, and write the send dispatcher again with it. Serialized, as
-- several servers may register templates at once.
CREATE OR REPLACE FUNCTION tasker.create_worker_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $outer$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tasker.create_worker_queue'));
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = p_queue) THEN
        PERFORM pgmq.create(p_queue);
    END IF;
    IF to_regproc('tasker.' || quote_ident('claim_' || p_queue)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE tasker.worker_queue_functions_sql(p_queue);
    EXECUTE tasker.send_function_sql();
END $outer$;

-- Existing worker queues get their functions again, as this file now
-- writes them, and the dispatcher its branches (with none, before any
-- queue exists). Runs only when the function files changed (the hash in
-- tasker.sql_functions), after every file, under the migration lock; and
-- under create_worker_queue's, which writes the dispatcher too. The
-- per-queue send_ functions of earlier versions are dropped.
DO $$
DECLARE
    q text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tasker.create_worker_queue'));
    FOR q IN SELECT queue_name FROM pgmq.meta WHERE queue_name LIKE 'worker\_%\_queue' LOOP
        EXECUTE tasker.worker_queue_functions_sql(q);
        EXECUTE format('DROP FUNCTION IF EXISTS tasker.%I(jsonb[])', 'send_' || q);
    END LOOP;
    EXECUTE tasker.send_function_sql();
END $$;
