# frozen_string_literal: true

# Loads the extension (TaskerWorker::Native, TaskerWorker::WorkerStopped)
# that scripts/ruby-worker builds into the workspace's target dir, never
# the source tree: $TASKER_RUBY_EXT, else
# ${CARGO_TARGET_DIR:-target}/ruby/tasker_worker_native.so of this repo.
module TaskerWorker
  ROOT = File.expand_path("../../../..", __dir__)
  EXTENSION = ENV.fetch("TASKER_RUBY_EXT") do
    target = File.expand_path(ENV.fetch("CARGO_TARGET_DIR", "target"), ROOT)
    File.join(target, "ruby", "tasker_worker_native.so")
  end

  unless File.file?(EXTENSION)
    raise LoadError, "#{EXTENSION} not found: build it with scripts/ruby-worker build"
  end

  require EXTENSION
end
