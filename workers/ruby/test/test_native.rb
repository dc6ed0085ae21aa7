# frozen_string_literal: true

require_relative "test_helper"

# The parts that need no task: the CLI's errors, the failure mapping,
# Step, and that the native calls release the GVL and yield to interrupts.
class TestNative < Minitest::Test
  def run_cli(*args)
    out, w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, Engine::BIN, *args, out: w, err: w)
    w.close
    output = out.read
    [Process.wait2(pid)[1].exitstatus, output]
  end

  def test_a_bad_handlers_file_is_one_error_line_naming_it_and_exit_2
    Dir.mktmpdir do |dir|
      empty = File.join(dir, "no_handlers.rb")
      File.write(empty, "X = 1\n")
      broken = File.join(dir, "broken.rb")
      File.write(broken, "HANDLERS = {\n")
      [File.join(dir, "missing.rb"), empty, broken].each do |file|
        status, output = run_cli("--handlers", file)
        assert_equal 2, status, output
        assert_equal 1, output.lines.size, output
        assert_match(/\Atasker-worker-ruby: cannot load handlers from #{Regexp.escape(file)}: /, output)
      end
    end
  end

  def test_failures_map_class_message_and_retryability
    error = begin
      raise TaskerWorker::PermanentError, "bad input"
    rescue TaskerWorker::PermanentError => e
      e
    end
    type, message, retryable = TaskerWorker.failure_of(error)
    assert_equal ["TaskerWorker::PermanentError", false], [type, retryable]
    assert_match(/\Abad input\n    .*test_native\.rb:\d+:in/, message)
    assert_equal true, TaskerWorker.failure_of(ZeroDivisionError.new("x"))[2]
    assert_equal false, TaskerWorker.failure_of(NotRetryable.new("x"))[2]
  end

  def test_step_parses_the_payload_and_names_a_missing_parent
    step = TaskerWorker::Step.from_json(JSON.generate(
      task_uuid: "t", step_uuid: "s", step_name: "b", task_context: { "n" => 1 },
      dependency_results: { "a" => 4 }, initialization: {}, inputs: nil, attempt: 1, child_steps: []
    ))
    assert_equal [4, 1, true], [step.dependency("a"), step.task_context["n"], step.frozen?]
    error = assert_raises(TaskerWorker::PermanentError) { step.dependency("z") }
    assert_equal "step 'b' has no result from 'z'", error.message
  end

  # A Native serving a namespace no task uses, so it never gets a step.
  def with_idle_native
    ENV["DATABASE_URL"] = Engine.instance.database_url
    ENV["TASKER__WORKER__NAMESPACES"] = "graceful_ruby"
    native = TaskerWorker::Native.new(HANDLERS.keys, Engine.instance.config_dir, nil, "gvl")
    yield native
  ensure
    ENV.delete("TASKER__WORKER__NAMESPACES")
    assert_equal true, native.stop if native
  end

  def test_poll_releases_the_gvl_and_yields_to_thread_kill
    with_idle_native do |native|
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      poller = Thread.new { native.poll(3000) }
      # With the GVL held, this thread would wait the poll's 3 s out.
      sleep 0.01 until poller.status == "sleep" || !poller.alive?
      100.times { sleep 0.001 }
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 1.5
      assert poller.alive?, "the poll should still be waiting"
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      poller.kill.join
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 0.5
    end
  end

  def test_poll_raises_worker_stopped_after_stop
    native = nil
    with_idle_native { |n| native = n }
    assert_raises(TaskerWorker::WorkerStopped) { native.poll(100) }
  end
end
