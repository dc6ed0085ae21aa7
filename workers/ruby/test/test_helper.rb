# frozen_string_literal: true

# One engine for the suite: tasker-server on a throwaway PostgreSQL
# (--local-postgres), with the test templates; each test starts its own
# Ruby worker(s) against it.

require "fileutils"
require "json"
require "minitest/autorun"
require "net/http"
require "rbconfig"
require "socket"
require "timeout"
require "tmpdir"

require "tasker_worker"
require_relative "handlers"

# The engine (started on first use, stopped after the run) and its REST API.
class Engine
  ROOT = TaskerWorker::ROOT
  SERVER = File.join(File.expand_path(ENV.fetch("CARGO_TARGET_DIR", "target"), ROOT), "debug", "tasker-server")
  BIN = File.join(ROOT, "workers", "ruby", "bin", "tasker-worker-ruby")
  HANDLERS_FILE = File.join(__dir__, "handlers.rb")
  TIMEOUT_S = 60

  # name => [callable, timeout_seconds, max_attempts] of one-step templates.
  ONE_STEP = {
    "raising_ruby" => ["rb.divide_by_zero", 30, 2],
    "permanent_ruby" => ["rb.permanent", 30, 3],
    "not_retryable_ruby" => ["rb.not_retryable", 30, 3],
    "slow_ruby" => ["rb.slow_first_attempt", 1, 2],
    "hang_ruby" => ["rb.hang_first_attempt", 2, 3],
    "graceful_ruby" => ["rb.sleep_briefly", 30, 1]
  }.freeze

  def self.instance
    @instance ||= start
  end

  def self.start
    raise "#{SERVER} not found: build it with `cargo build --bins`" unless File.executable?(SERVER)

    home = Dir.mktmpdir("tasker-ruby-test")
    config = write_config(home)
    port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
    out, w = IO.pipe
    # Not DATABASE_URL: the server starts its own PostgreSQL.
    pid = Process.spawn({ "DATABASE_URL" => nil }, SERVER, "--config-dir", config, "--local-postgres",
                        "--bind", "127.0.0.1:#{port}", out: w, err: w, chdir: home)
    w.close
    Minitest.after_run do
      Process.kill("TERM", pid)
      Process.wait(pid)
      FileUtils.rm_rf(home)
    end
    new("http://127.0.0.1:#{port}", wait_for_server(out), config)
  end

  def self.write_config(home)
    templates = File.join(home, "templates")
    FileUtils.mkdir_p(templates)
    # Tier 1's templates unchanged: tier 4 runs them with Ruby handlers.
    %w[linear diamond].each { |name| FileUtils.cp(File.join(ROOT, "scenarios", "templates", "#{name}.yaml"), templates) }
    ONE_STEP.each { |name, spec| File.write(File.join(templates, "#{name}.yaml"), one_step(name, *spec)) }
    config = File.join(home, "config")
    FileUtils.mkdir_p(config)
    toml = File.read(File.join(ROOT, "config", "tasker.toml")).sub(/^paths = .*$/, "paths = [#{templates.dump}]")
    File.write(File.join(config, "tasker.toml"), toml)
    config
  end

  def self.one_step(name, callable, timeout_s, attempts)
    <<~YAML
      name: #{name}
      namespace_name: #{name}
      version: "1.0.0"
      steps:
        - name: only_step
          handler:
            callable: #{callable}
          retry:
            retryable: true
            max_attempts: #{attempts}
            backoff: exponential
            backoff_base_ms: 50
            max_backoff_ms: 200
          timeout_seconds: #{timeout_s}
    YAML
  end

  # The database URL the server printed, once it listens.
  def self.wait_for_server(out)
    seen = +""
    url = nil
    Timeout.timeout(180) do
      out.each_line do |line|
        seen << line
        url = line.split(" ", 2)[1].strip if line.start_with?("PostgreSQL: ")
        break if line.include?("listening on")
      end
    end
    raise "tasker-server did not start:\n#{seen}" unless url && seen.include?("listening on")

    Thread.new { out.each_line { nil } } # drained, or the server blocks on a full pipe
    url
  end

  attr_reader :database_url, :config_dir

  def initialize(api, database_url, config_dir)
    @api = URI(api)
    @database_url = database_url
    @config_dir = config_dir
  end

  def create_task(namespace, context, name = namespace)
    body = { namespace: namespace, name: name, version: "1.0.0", context: context }
    call(Net::HTTP::Post.new("/v1/tasks"), body).fetch("task_uuid")
  end

  def state(task)
    call(Net::HTTP::Get.new("/v1/tasks/#{task}")).fetch("state")
  end

  # Step name => step.
  def steps(task)
    call(Net::HTTP::Get.new("/v1/tasks/#{task}/workflow_steps")).to_h { |step| [step.fetch("name"), step] }
  end

  def wait(task)
    deadline = Time.now + TIMEOUT_S
    while Time.now < deadline
      state = state(task)
      return state if %w[complete error].include?(state)

      sleep 0.05
    end
    raise Minitest::Assertion, "task #{task} did not finish within #{TIMEOUT_S} s"
  end

  def wait_until_in_progress(task, step = "only_step")
    deadline = Time.now + 30
    sleep 0.05 until steps(task).dig(step, "state") == "in_progress" || Time.now > deadline
    raise Minitest::Assertion, "step #{step} was never claimed" unless steps(task).dig(step, "state") == "in_progress"
  end

  # A Worker with the test handlers, running on a thread for the block.
  def with_worker(worker_id = "minitest")
    ENV["DATABASE_URL"] = database_url # read by the engine, in this process
    worker = TaskerWorker::Worker.new(HANDLERS, config_dir: config_dir, worker_id: worker_id)
    thread = Thread.new { worker.run }
    yield worker
  ensure
    worker&.stop
    raise Minitest::Assertion, "the worker did not stop" if thread && !thread.join(30)
  end

  # The CLI in its own process, once it says it is running: its pid, and a
  # thread whose value is the rest of its output (drained meanwhile).
  def worker_process(worker_id)
    out, w = IO.pipe
    pid = Process.spawn({ "DATABASE_URL" => database_url }, RbConfig.ruby, BIN, "--handlers", HANDLERS_FILE,
                        "--config-dir", config_dir, "--worker-id", worker_id, out: w, err: w)
    w.close
    line = Timeout.timeout(60) { out.gets }
    unless line == "tasker-worker (ruby) #{worker_id} running\n"
      raise Minitest::Assertion, "unexpected first line #{line.inspect}: #{out.read}"
    end

    [pid, Thread.new { out.read }]
  end

  private

  def call(request, body = nil)
    request["content-type"] = "application/json"
    request.body = JSON.generate(body) if body
    response = Net::HTTP.start(@api.host, @api.port, read_timeout: 10) { |http| http.request(request) }
    raise "#{request.method} #{request.path}: #{response.code} #{response.body}" unless response.is_a?(Net::HTTPSuccess)

    JSON.parse(response.body)
  end
end
