-- The tasker schema: templates, tasks, steps, their DAG edges, the
-- append-only state transition audit, the legal state changes, batch
-- checkpoints, rejected messages and dead letters. pgmq (queues) is
-- installed beside it from the pgmq crate's embedded SQL before these
-- migrations run.
--
-- Migrations hold the schema only. The functions are in engine/sql/, one
-- file per operation, applied with CREATE OR REPLACE after the migrations
-- (database::migrate); see engine/sql/README.md.

CREATE SCHEMA IF NOT EXISTS tasker;

-- The Rust enums in state.rs mirror these one to one.
CREATE TYPE tasker.task_state AS ENUM (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process',
    'evaluating_results', 'waiting_for_dependencies', 'waiting_for_retry',
    'blocked_by_failures', 'complete', 'error', 'cancelled', 'resolved_manually'
);

CREATE TYPE tasker.step_state AS ENUM (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry', 'complete',
    'error', 'cancelled', 'resolved_manually'
);

CREATE TABLE tasker.namespaces (
    namespace_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A task template, stored as the validated JSON of the YAML it came from.
CREATE TABLE tasker.named_tasks (
    named_task_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace_id    integer NOT NULL REFERENCES tasker.namespaces,
    name            text NOT NULL,
    version         text NOT NULL,
    template        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace_id, name, version)
);

CREATE TABLE tasker.tasks (
    task_uuid       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    named_task_uuid uuid NOT NULL REFERENCES tasker.named_tasks,
    context         jsonb NOT NULL DEFAULT '{}',
    -- sha256 of template key + idempotency key (or context): creating the
    -- same task twice returns the first one.
    identity_hash   text NOT NULL UNIQUE,
    priority        integer NOT NULL DEFAULT 0,
    correlation_id  uuid,
    initiator       text,
    source_system   text,
    reason          text,
    tags            jsonb NOT NULL DEFAULT '{}',
    complete        boolean NOT NULL DEFAULT false,
    -- The current state, and the number of transitions recorded (the
    -- sort_key of the latest): changed together by every state change, in
    -- the same UPDATE (see tasker.try_transition_task).
    state           tasker.task_state NOT NULL DEFAULT 'pending',
    transitions     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz
)
-- Room on each page for the new versions of its rows: a task and its steps
-- change state several times, and an update that fits on the same page and
-- changes no indexed column writes no index entry (a HOT update).
WITH (fillfactor = 70);
CREATE INDEX tasks_named_task_idx ON tasker.tasks (named_task_uuid);
CREATE INDEX tasks_correlation_idx ON tasker.tasks (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE tasker.workflow_steps (
    workflow_step_uuid     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_uuid              uuid NOT NULL REFERENCES tasker.tasks ON DELETE CASCADE,
    name                   text NOT NULL,
    step_type              text NOT NULL DEFAULT 'standard',
    handler_callable       text NOT NULL,
    handler_initialization jsonb NOT NULL DEFAULT '{}',
    inputs                 jsonb,
    results                jsonb,
    -- the last failure: {"error_type", "message", "retryable"}
    last_error             jsonb,
    attempts               integer NOT NULL DEFAULT 0,
    max_attempts           integer NOT NULL CHECK (max_attempts >= 1),
    retryable              boolean NOT NULL,
    backoff                text NOT NULL CHECK (backoff IN ('exponential', 'linear', 'fixed')),
    backoff_base_ms        integer NOT NULL,
    max_backoff_ms         integer NOT NULL,
    timeout_seconds        integer NOT NULL,
    next_retry_at          timestamptz,
    -- pgmq message id of the claim in progress, so a duplicate message for
    -- the same step can be told apart from the claimed one.
    claim_msg_id           bigint,
    last_attempted_at      timestamptz,
    processed_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the token of the claim in progress: a result is recorded only under
    -- it (fencing; engine/sql/worker_queues.sql)
    claim_token            uuid,
    -- On a batchable step: {"worker": <the batch_worker's template step>,
    -- "convergence": [names of the steps collecting its batches]}.
    batch_plan             jsonb,
    -- A batch worker's last checkpoint: {cursor, partial, attempt, sequence}.
    checkpoint             jsonb,
    -- The current state and the number of transitions recorded, as on
    -- tasks. A step is created pending, with that first history row
    -- (sort_key 1) inserted beside it.
    state                  tasker.step_state NOT NULL DEFAULT 'pending',
    transitions            integer NOT NULL DEFAULT 1,
    UNIQUE (task_uuid, name)
)
WITH (fillfactor = 70);

CREATE TABLE tasker.workflow_step_edges (
    from_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    to_step_uuid   uuid NOT NULL REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    name           text NOT NULL DEFAULT 'provides',
    PRIMARY KEY (from_step_uuid, to_step_uuid)
);
CREATE INDEX workflow_step_edges_to_idx ON tasker.workflow_step_edges (to_step_uuid);

-- The transition history, insert-only. The current state is the task's or
-- step's `state` column, changed in a compare-and-swap on that row (see
-- tasker.try_transition_task / tasker.try_transition_step), which also
-- numbers the transition: sort_key = the row's `transitions` after it.
-- The key (owner, sort_key) is also the history's order and the index the
-- foreign key's cascade uses: one index to write on every state change.
CREATE TABLE tasker.task_transitions (
    task_uuid          uuid NOT NULL REFERENCES tasker.tasks ON DELETE CASCADE,
    from_state         tasker.task_state,
    to_state           tasker.task_state NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    sort_key           integer NOT NULL,
    -- clock_timestamp, not now(): several transitions in one transaction
    -- keep their real order and spacing for the phase breakdown.
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_uuid, sort_key)
);

CREATE TABLE tasker.workflow_step_transitions (
    workflow_step_uuid          uuid NOT NULL REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    from_state                  tasker.step_state,
    to_state                    tasker.step_state NOT NULL,
    metadata                    jsonb NOT NULL DEFAULT '{}',
    sort_key                    integer NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_step_uuid, sort_key)
);

-- One row per handler attempt that reported back (success or failure).
-- Each claim is a new attempt and takes at most one result, so
-- (step, attempt) identifies a row.
CREATE TABLE tasker.workflow_step_result_audit (
    workflow_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    task_uuid          uuid NOT NULL,
    attempt            integer NOT NULL,
    success            boolean NOT NULL,
    execution_time_us  bigint,
    worker_id          text,
    error_type         text,
    error_message      text,
    retryable          boolean,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_step_uuid, attempt)
);

-- The legal state changes. The Rust state machine (state.rs) holds the same
-- table; a test checks the two agree pair by pair.
CREATE TABLE tasker.task_state_rules (
    from_state tasker.task_state NOT NULL,
    to_state   tasker.task_state NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO tasker.task_state_rules (from_state, to_state) VALUES
    ('pending', 'initializing'), ('pending', 'cancelled'),
    ('initializing', 'enqueuing_steps'), ('initializing', 'error'), ('initializing', 'cancelled'),
    ('enqueuing_steps', 'steps_in_process'), ('enqueuing_steps', 'error'), ('enqueuing_steps', 'cancelled'),
    ('steps_in_process', 'evaluating_results'), ('steps_in_process', 'cancelled'),
    ('evaluating_results', 'enqueuing_steps'), ('evaluating_results', 'steps_in_process'),
    ('evaluating_results', 'waiting_for_dependencies'), ('evaluating_results', 'waiting_for_retry'),
    ('evaluating_results', 'blocked_by_failures'), ('evaluating_results', 'complete'),
    ('evaluating_results', 'error'), ('evaluating_results', 'cancelled'),
    ('waiting_for_dependencies', 'evaluating_results'), ('waiting_for_dependencies', 'cancelled'),
    ('waiting_for_retry', 'evaluating_results'), ('waiting_for_retry', 'cancelled'),
    ('blocked_by_failures', 'error'), ('blocked_by_failures', 'evaluating_results'),
    ('blocked_by_failures', 'resolved_manually'), ('blocked_by_failures', 'cancelled'),
    ('error', 'resolved_manually'),
    -- putting a dead-lettered task back
    ('error', 'evaluating_results');

CREATE TABLE tasker.step_state_rules (
    from_state tasker.step_state NOT NULL,
    to_state   tasker.step_state NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO tasker.step_state_rules (from_state, to_state) VALUES
    ('pending', 'enqueued'), ('pending', 'cancelled'), ('pending', 'resolved_manually'),
    ('enqueued', 'in_progress'), ('enqueued', 'pending'), ('enqueued', 'cancelled'),
    ('enqueued', 'resolved_manually'),
    ('in_progress', 'enqueued_for_orchestration'), ('in_progress', 'enqueued_as_error_for_orchestration'),
    ('in_progress', 'cancelled'), ('in_progress', 'resolved_manually'),
    ('enqueued_for_orchestration', 'complete'), ('enqueued_for_orchestration', 'error'),
    ('enqueued_as_error_for_orchestration', 'waiting_for_retry'),
    ('enqueued_as_error_for_orchestration', 'error'),
    ('waiting_for_retry', 'enqueued'), ('waiting_for_retry', 'cancelled'),
    ('waiting_for_retry', 'resolved_manually'),
    ('error', 'resolved_manually'),
    -- a lapsed lease puts the step back to enqueued before it is claimed again
    ('in_progress', 'enqueued'),
    -- putting a dead-lettered task back
    ('cancelled', 'pending'), ('error', 'pending');

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

-- Messages that are not what their queue carries (not an object with the
-- expected uuids, or naming no known step or task), moved here with the
-- reason instead of failing their consumer's transaction again and again.
CREATE TABLE tasker.rejected_messages (
    queue_name  text NOT NULL,
    msg_id      bigint NOT NULL,
    message     jsonb,
    reason      text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (queue_name, msg_id)
);

-- Tasks the staleness detector gave up on (tasker.repair_task), with the
-- reason; tasker.retry_dead_letter puts one back.
CREATE TABLE tasker.dead_letters (
    task_uuid   uuid PRIMARY KEY REFERENCES tasker.tasks ON DELETE CASCADE,
    reason      text NOT NULL,
    -- the task's state and its steps' states when it was dead-lettered
    task_state  tasker.task_state NOT NULL,
    steps       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- set when tasker.retry_dead_letter put the task back
    retried_at  timestamptz
);

-- The engine's SQL functions (engine/sql/*.sql) as applied: the sha256 of
-- their text, newest last. A process that starts with the same files finds
-- their hash here and rewrites nothing (database::migrate).
CREATE TABLE tasker.sql_functions (
    hash       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The queue of results and due retries for orchestration. Worker queues
-- are made when a template of their namespace is registered
-- (tasker.create_worker_queue).
SELECT pgmq.create('orchestration_step_results');
