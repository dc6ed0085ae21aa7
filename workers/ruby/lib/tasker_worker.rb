# frozen_string_literal: true

# Ruby step handlers for the Tasker workflow engine.
#
# A handler is a Proc (or lambda, Method) taking a TaskerWorker::Step, or
# any object with call(step), registered under the callable name its
# templates give (handler.callable). Its result is encoded with
# JSON.generate. An exception fails the step: its class name is the error
# type, its message and backtrace the message; the step is retried (up to
# the template's max_attempts) unless the exception is a PermanentError or
# answers false to retryable? (or retryable). Claiming, leases, timeouts
# and retries are the engine's own Rust worker's (TaskerWorker::Native); a
# step crosses the boundary once each way, as JSON text.

require "json"

require_relative "tasker_worker/native"
require_relative "tasker_worker/step"
require_relative "tasker_worker/worker"
