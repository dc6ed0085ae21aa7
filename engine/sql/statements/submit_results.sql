-- A worker's hot path for its results: a batch of results of one worker
-- queue recorded by one plain statement, sent by the result submitter
-- (worker/results.rs), which writes the queue's table for `{QUEUE_TABLE}`.
-- $1: the entries, as tasker.submit_<queue> takes them (a JSON array of
-- objects: step_uuid, msg_id, claim_token, success, result, error,
-- execution_time_us, worker_id). $2: whether to wake orchestration; a
-- submitter that completes its own results in the same transaction
-- (complete_steps.sql, worker.complete_results) wakes it only for what
-- it leaves, and reads the orchestration messages this returns.
--
-- It does what tasker.submit_<queue> does when every result reports on
-- its step's current claim, the common case: the claims' messages
-- deleted, the steps moved to orchestration (the compare-and-swap on the
-- claim token), their history and audit rows, one orchestration message
-- each, orchestration woken. As a function the same statements cost
-- their executor start-up one by one inside PL/pgSQL; sent as one
-- statement, a submit's server time is about half.
--
-- All or nothing: when any entry is refused (its claim lapsed and the
-- step was claimed again or moved on, or its message is gone, or a step
-- comes twice), the statement raises TK005 and changes nothing, and the
-- submitter sends the batch to the function, which refuses those entries
-- and puts back a message a newer claim still holds. Refusals are rare
-- (a worker paused past its lease), so they cost an error round trip.
--
-- The messages are deleted first, in msg_id order, as a claim locks
-- them: while the submit holds a message, its lease cannot lapse into a
-- new claim, so the token compared next stays the step's. The UPDATE
-- reads the taken messages through ARRAY(), run whole before it starts,
-- so every message is held before any step is written (a claim that
-- lapses holds its message and then writes the step: the other order
-- could deadlock with it).
--
-- It runs on the submitter's session settings (database::HOT_PATH_SESSION):
-- one generic plan, no sequential scans, no JIT.
WITH entries AS (
    -- each field typed as it is read: a field not of its type is an
    -- error of the statement, as a wrong argument is of the function's
    SELECT x.step_uuid, x.msg_id, x.claim_token, coalesce(x.success, false) AS success,
           x.result, x.error, x.execution_time_us, x.worker_id
      FROM jsonb_to_recordset($1) x(step_uuid uuid, msg_id bigint, claim_token uuid,
               success boolean, result jsonb, error jsonb, execution_time_us bigint,
               worker_id text)
), taken AS (
    DELETE FROM {QUEUE_TABLE} q
     WHERE q.msg_id = ANY (ARRAY(SELECT e.msg_id FROM entries e))
    RETURNING q.msg_id
), recorded AS (
    -- the steps whose claim is the entry's, with their message taken
    UPDATE tasker.workflow_steps ws
       SET state = CASE WHEN ok.success THEN 'enqueued_for_orchestration'
                        ELSE 'enqueued_as_error_for_orchestration' END::tasker.step_state,
           transitions = ws.transitions + 1,
           -- a result of JSON null is stored as such (jsonb_to_recordset
           -- reads it as SQL NULL)
           results = CASE WHEN ok.success THEN coalesce(ok.result, 'null') ELSE ws.results END,
           last_error = CASE WHEN ok.success THEN NULL ELSE ok.error END,
           claim_msg_id = NULL, claim_token = NULL, updated_at = clock_timestamp()
      FROM entries ok
     WHERE ws.workflow_step_uuid = ANY (ARRAY(SELECT e.step_uuid FROM entries e, taken t
                                               WHERE t.msg_id = e.msg_id))
       AND ws.workflow_step_uuid = ok.step_uuid
       AND ws.state = 'in_progress' AND ws.claim_token = ok.claim_token
    RETURNING ws.workflow_step_uuid AS step, ok.success, ok.error, ok.execution_time_us AS us,
              ok.worker_id AS worker, ws.task_uuid, ws.attempts, ws.state, ws.transitions
), history AS (
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, metadata, sort_key)
    SELECT r.step, 'in_progress', r.state,
           jsonb_build_object('worker', r.worker, 'execution_time_us', r.us), r.transitions
      FROM recorded r
), audit AS (
    INSERT INTO tasker.workflow_step_result_audit (workflow_step_uuid, task_uuid, attempt,
        success, execution_time_us, worker_id, error_type, error_message, retryable)
    SELECT r.step, r.task_uuid, r.attempts, r.success, r.us, r.worker,
           r.error->>'error_type', r.error->>'message', (r.error->>'retryable')::boolean
      FROM recorded r
), to_orchestration AS (
    INSERT INTO pgmq.q_orchestration_step_results (vt, message)
    SELECT clock_timestamp(), jsonb_build_object('task_uuid', r.task_uuid, 'step_uuid', r.step)
      FROM recorded r
    RETURNING msg_id
)
SELECT CASE WHEN c.recorded = c.entries THEN c.recorded
            ELSE tasker.decline_submit(c.entries::integer, c.recorded::integer) END AS recorded,
       c.woken, ARRAY(SELECT o.msg_id FROM to_orchestration o) AS messages
  FROM (SELECT (SELECT count(*) FROM entries) AS entries,
               (SELECT count(*) FROM recorded) AS recorded,
               -- orchestration woken once; a declined statement's
               -- notification is never sent (it goes at commit)
               (SELECT count(pg_notify('orchestration_step_results', ''))
                  FROM (SELECT 1 FROM recorded WHERE $2 LIMIT 1) one) AS woken) c
