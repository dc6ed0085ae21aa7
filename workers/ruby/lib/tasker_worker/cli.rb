# frozen_string_literal: true

require "optparse"

module TaskerWorker
  # bin/tasker-worker-ruby: a worker serving the handlers of a Ruby file,
  # which names them in a top-level HANDLERS Hash (callable name ->
  # handler). Configuration is tasker-worker's (--config-dir, TASKER_ENV,
  # DATABASE_URL, TASKER__... overrides).
  module CLI
    USAGE = "usage: tasker-worker-ruby --handlers FILE [--config-dir DIR] [--env ENV] " \
            "[--worker-id ID] [--threads N]"

    # The exit status: 0 after a stop (SIGTERM, SIGINT), 1 if the worker
    # cannot start, 2 for bad arguments or a bad handlers file.
    def self.main(argv)
      options = parse(argv)
      handlers = load_handlers(options.delete(:handlers))
      worker = Worker.new(handlers, **options)
      worker.run do
        # Printed once serving, with the signals trapped: a harness may
        # send SIGTERM as soon as it reads this line.
        $stdout.puts "tasker-worker (ruby) #{worker.worker_id} running"
        $stdout.flush
      end
      0
    rescue UsageError => e
      warn "tasker-worker-ruby: #{e.message}"
      2
    rescue RuntimeError => e
      warn "tasker-worker-ruby: #{e.message}"
      1
    end

    class UsageError < StandardError; end

    def self.parse(argv)
      options = { config_dir: ENV.fetch("TASKER_CONFIG_DIR", "config"), env: ENV.fetch("TASKER_ENV", nil),
                  worker_id: nil, threads: 4 }
      OptionParser.new(USAGE) do |o|
        o.on("--handlers FILE", "Ruby file defining HANDLERS") { |v| options[:handlers] = v }
        o.on("--config-dir DIR") { |v| options[:config_dir] = v }
        o.on("--env ENV") { |v| options[:env] = v }
        o.on("--worker-id ID") { |v| options[:worker_id] = v }
        o.on("--threads N", Integer, "threads running handlers (4)") { |v| options[:threads] = v }
      end.parse!(argv)
      raise UsageError, "--handlers FILE is required\n#{USAGE}" unless options[:handlers]
      raise UsageError, "unexpected arguments #{argv.join(' ')}\n#{USAGE}" unless argv.empty?

      options
    rescue OptionParser::ParseError => e
      raise UsageError, "#{e.message}\n#{USAGE}"
    end

    # Loads file at top level and returns its HANDLERS, checked.
    def self.load_handlers(file)
      load File.expand_path(file)
      handlers = Object.const_defined?(:HANDLERS) ? Object.const_get(:HANDLERS) : nil
      raise ArgumentError, "it defines no HANDLERS Hash (callable name -> handler)" unless handlers.is_a?(Hash)
      raise ArgumentError, "its HANDLERS is empty" if handlers.empty?

      handlers.each { |name, handler| TaskerWorker.callable_of(name, handler) }
    rescue ScriptError, StandardError => e
      # One line: a SyntaxError's message spans several.
      raise UsageError, "cannot load handlers from #{file}: #{e.class}: #{e.message.lines.first&.strip}"
    end
  end
end
