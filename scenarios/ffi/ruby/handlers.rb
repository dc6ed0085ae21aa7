# frozen_string_literal: true

# Tier 4's Ruby handlers: tier 1's arithmetic (scenarios/src/arithmetic.rs)
# under tier 1's callable names, so the Ruby worker serves the linear and
# diamond templates unchanged.
#
#   workers/ruby/bin/tasker-worker-ruby --handlers scenarios/ffi/ruby/handlers.rb

require "tasker_worker"

module Tier4Handlers
  U64_MAX = (2**64) - 1

  def self.non_negative(step, value, what)
    return value if value.is_a?(Integer) && value >= 0

    raise TaskerWorker::PermanentError,
          "step '#{step.step_name}': #{what} #{value.inspect} is not a non-negative integer"
  end

  # Results are u64 in the Rust handlers: so here too.
  def self.fits(step, n)
    raise TaskerWorker::PermanentError, "step '#{step.step_name}': result does not fit in 64 bits" if n > U64_MAX

    n
  end

  # input²: the task's even_number for a root step, else the one parent's result.
  SQUARE = lambda do |step|
    parents = step.dependency_results.values
    if parents.size > 1
      raise TaskerWorker::PermanentError, "step '#{step.step_name}' expects one parent, has #{parents.size}"
    end

    n = if parents.empty?
          non_negative(step, step.task_context["even_number"], "even_number")
        else
          non_negative(step, parents.first, "parent result")
        end
    fits(step, n * n)
  end

  # The product of all parents' results, in name order.
  class Multiply
    def call(step)
      product = step.dependency_results.keys.sort.reduce(1) do |acc, name|
        acc * Tier4Handlers.non_negative(step, step.dependency(name), "parent result")
      end
      Tier4Handlers.fits(step, product)
    end
  end
end

HANDLERS = {
  "linear.square" => Tier4Handlers::SQUARE,
  "diamond.square" => Tier4Handlers::SQUARE,
  "diamond.multiply" => Tier4Handlers::Multiply.new
}.freeze
