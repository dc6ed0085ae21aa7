# frozen_string_literal: true

require_relative "test_helper"

# Ruby handlers run by the engine's worker core, against a real engine.
class TestWorker < Minitest::Test
  def engine
    Engine.instance
  end

  def test_tier_1_linear_runs_to_n_to_the_16th_with_ruby_handlers
    task = nil
    engine.with_worker do
      task = engine.create_task("linear", { even_number: 2 }, "linear_workflow")
      assert_equal "complete", engine.wait(task)
    end
    steps = engine.steps(task)
    assert_equal [4, 16, 256, 65_536], (1..4).map { |i| steps.fetch("linear_step_#{i}")["results"] }
  end

  def test_tier_1_diamond_with_a_class_instance_handler_converges
    assert_instance_of TIER4::Tier4Handlers::Multiply, HANDLERS.fetch("diamond.multiply")
    task = nil
    engine.with_worker do
      task = engine.create_task("diamond", { even_number: 2 }, "diamond_workflow")
      assert_equal "complete", engine.wait(task)
    end
    steps = engine.steps(task)
    assert_equal [4, 16, 16], %w[diamond_start diamond_branch_b diamond_branch_c].map { |s| steps[s]["results"] }
    assert_equal 256, steps["diamond_end"]["results"] # 2^8
  end

  def test_a_raising_handler_fails_with_its_exception_class_message_and_backtrace
    task = nil
    engine.with_worker do
      task = engine.create_task("raising_ruby", {})
      assert_equal "error", engine.wait(task)
    end
    step = engine.steps(task)["only_step"]
    error = step["last_error"]
    assert_equal "ZeroDivisionError", error["error_type"], error
    assert_match(/\Adivided by 0\n/, error["message"])
    assert_match(%r{test/handlers\.rb:\d+:in `/'}, error["message"]) # the backtrace
    assert_equal 2, step["attempts"], "retryable: retried up to max_attempts"
  end

  def test_permanent_and_not_retryable_errors_are_not_retried
    tasks = {}
    engine.with_worker do
      tasks = %w[permanent_ruby not_retryable_ruby].to_h { |ns| [ns, engine.create_task(ns, {})] }
      tasks.each_value { |task| assert_equal "error", engine.wait(task) }
    end
    permanent = engine.steps(tasks["permanent_ruby"])["only_step"]
    assert_equal "TaskerWorker::PermanentError", permanent.dig("last_error", "error_type")
    assert_equal 1, permanent["attempts"], "max_attempts is 3"
    custom = engine.steps(tasks["not_retryable_ruby"])["only_step"]
    assert_equal ["NotRetryable", 1], [custom.dig("last_error", "error_type"), custom["attempts"]]
  end

  def test_a_handler_past_its_timeout_is_retried
    task = nil
    engine.with_worker do
      task = engine.create_task("slow_ruby", {})
      assert_equal "complete", engine.wait(task)
    end
    step = engine.steps(task)["only_step"]
    assert_equal 2, step["attempts"], step
    assert_equal({ "attempt" => 2 }, step["results"])
  end

  def test_a_worker_process_killed_mid_step_leaves_the_step_to_another
    pid, = engine.worker_process("doomed")
    begin
      task = engine.create_task("hang_ruby", {})
      engine.wait_until_in_progress(task)
      Process.kill("KILL", pid)
    ensure
      Process.kill("KILL", pid) rescue nil # rubocop:disable Style/RescueModifier
      Process.wait(pid)
    end
    engine.with_worker("survivor") { assert_equal "complete", engine.wait(task) }
    step = engine.steps(task)["only_step"]
    assert_equal [2, { "attempt" => 2 }], [step["attempts"], step["results"]], step
  end

  def test_sigterm_lets_the_step_in_flight_finish_then_exits_0
    pid, output = engine.worker_process("graceful")
    task = engine.create_task("graceful_ruby", {})
    engine.wait_until_in_progress(task)
    Process.kill("TERM", pid)
    _, status = Timeout.timeout(30) { Process.wait2(pid) }
    assert_equal 0, status.exitstatus, output.value
    assert_equal "complete", engine.wait(task)
    step = engine.steps(task)["only_step"]
    assert_equal [1, { "slept" => 1 }], [step["attempts"], step["results"]]
  end
end
