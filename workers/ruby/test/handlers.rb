# frozen_string_literal: true

# The test handlers: tier 4's (scenarios/ffi/ruby/handlers.rb, loaded into
# a module of its own so that its HANDLERS does not clash with this one's)
# and handlers that fail, hang or outlive their timeout on attempt 1.
# Loaded by the tests and, as --handlers, by the CLI they start.

require "tasker_worker"

TIER4 = Module.new
load File.expand_path("../../../scenarios/ffi/ruby/handlers.rb", __dir__), TIER4

# A retryable failure (max_attempts 2 in its template): 1 / 0.
def divide_by_zero(_step)
  1 / 0
end

# The step's timeout is 1 s.
SLOW_FIRST_ATTEMPT = lambda do |step|
  sleep 3 if step.attempt == 1
  { "attempt" => step.attempt }
end

# Until the process is SIGKILLed.
HANG_FIRST_ATTEMPT = lambda do |step|
  sleep 3600 if step.attempt == 1
  { "attempt" => step.attempt }
end

# A custom exception saying it is not retryable.
class NotRetryable < StandardError
  def retryable = false
end

HANDLERS = TIER4::HANDLERS.merge(
  "rb.divide_by_zero" => method(:divide_by_zero),
  "rb.permanent" => ->(_step) { raise TaskerWorker::PermanentError, "no retry can fix this" },
  "rb.not_retryable" => ->(_step) { raise NotRetryable, "nor this" },
  "rb.slow_first_attempt" => SLOW_FIRST_ATTEMPT,
  "rb.hang_first_attempt" => HANG_FIRST_ATTEMPT,
  "rb.sleep_briefly" => lambda do |step|
    sleep 1.5 # long enough for the test to stop the worker meanwhile
    { "slept" => step.attempt }
  end
).freeze
