# frozen_string_literal: true

module TaskerWorker
  # A failure no retry can fix: the step ends at once.
  class PermanentError < StandardError
    def retryable?
      false
    end
  end

  # What a handler sees of its step. task_context, dependency_results
  # (parent step name -> result), initialization and inputs are parsed
  # JSON: Hashes have String keys.
  Step = Struct.new(
    :task_uuid, :step_uuid, :step_name, :task_context, :dependency_results,
    :initialization, :inputs, :attempt, :child_steps,
    keyword_init: true
  ) do
    # The Step of the core's payload (JSON text), frozen.
    def self.from_json(text)
      fields = JSON.parse(text)
      step = new(**members.to_h { |name| [name, fields[name.to_s]] })
      step.child_steps ||= []
      step.freeze
    end

    # A parent's result; a PermanentError naming the missing parent.
    def dependency(name)
      dependency_results.fetch(name.to_s) do
        raise PermanentError, "step '#{step_name}' has no result from '#{name}'"
      end
    end
  end
end
