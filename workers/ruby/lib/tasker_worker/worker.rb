# frozen_string_literal: true

module TaskerWorker
  # Serves handlers (callable name -> handler) until stopped.
  class Worker
    POLL_MS = 100
    SIGNALS = %w[TERM INT].freeze

    attr_reader :handlers

    # Connects, migrates and starts claiming at once (the engine's worker
    # runs on its own threads); raises RuntimeError if it cannot.
    def initialize(handlers, config_dir: ENV.fetch("TASKER_CONFIG_DIR", "config"),
                   env: ENV["TASKER_ENV"], worker_id: nil, threads: 4)
      @handlers = handlers.to_h { |name, handler| [name.to_s, TaskerWorker.callable_of(name, handler)] }
      raise ArgumentError, "no handlers given" if @handlers.empty?

      # Handlers run on `threads` threads: one that hangs or outlives its
      # timeout (a Ruby thread cannot be safely cancelled) holds only its own.
      @threads = [Integer(threads), 1].max
      env = nil if env.to_s.empty?
      @native = Native.new(@handlers.keys, config_dir.to_s, env, worker_id&.to_s)
      # Stop requests: a Queue, because trap handlers may push to it.
      @requests = Queue.new
    end

    def worker_id
      @native.worker_id
    end

    # Runs steps until SIGTERM or SIGINT (trapped when called on the main
    # thread) or #stop, then lets the steps already claimed finish and
    # report before returning. Yields once serving, if given a block.
    def run
      previous = trap_signals if Thread.current == Thread.main
      servers = Array.new(@threads) { |i| Thread.new { serve("tasker-handler-#{i + 1}") } }
      yield self if block_given?
      @requests.pop
      # Waits for the steps handed over; the servers complete them meanwhile,
      # then get WorkerStopped. One still running a handler the engine gave
      # up on (timed out: its result will be refused) is not waited for.
      @native.stop
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 1
      servers.each { |server| server.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) }
      nil
    ensure
      previous&.each { |signal, handler| Signal.trap(signal, handler) }
    end

    # Stops claiming; #run returns once in-flight steps are done.
    def stop
      @requests << :stop
      nil
    end

    private

    def trap_signals
      SIGNALS.to_h { |signal| [signal, Signal.trap(signal) { stop }] }
    end

    def serve(name)
      Thread.current.name = name
      loop do
        step = @native.poll(POLL_MS)
        run_one(*step) if step
      end
    rescue WorkerStopped
      nil
    end

    def run_one(id, callable, step_name, payload)
      result = @handlers.fetch(callable).call(Step.from_json(payload))
      accepted = @native.complete_success(id, JSON.generate(result))
    rescue Exception => e # rubocop:disable Lint/RescueException -- whatever it is, it fails its step
      accepted = @native.complete_failure(id, *TaskerWorker.failure_of(e))
    ensure
      warn "tasker-worker: the engine no longer waits for step #{step_name} (timed out): result dropped" if accepted == false
    end
  end

  # handler's call(step) (a Proc, Method or any object with call).
  def self.callable_of(name, handler)
    return handler if handler.respond_to?(:call)

    raise ArgumentError, "handler #{name.inspect} must be a Proc or have call(step); got #{handler.inspect}"
  end

  # [error_type, message, retryable] of a handler's exception; never raises,
  # since a failure that cannot be reported would lose the step.
  def self.failure_of(error)
    type = error.class.name || error.class.inspect
    trace = (error.backtrace || []).map { |line| "    #{line}" }
    message = [error.message, *trace].join("\n").encode(Encoding::UTF_8, invalid: :replace, undef: :replace)
    [type, message, retryable?(error)]
  rescue Exception # rubocop:disable Lint/RescueException
    [type || "Exception", "(the handler's exception could not be described)", true]
  end

  # False for PermanentError, or an exception whose retryable? (or
  # retryable) says false.
  def self.retryable?(error)
    if error.respond_to?(:retryable?) then error.retryable? ? true : false
    elsif error.respond_to?(:retryable) then error.retryable ? true : false
    else true
    end
  end
end
