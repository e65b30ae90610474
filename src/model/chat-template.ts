/**
 * Chat messages rendered with the model's chat template (tokenizer_config.json's chat_template) by
 * @huggingface/jinja, the JS port of the Jinja subset transformers uses, so attendees see the exact text a
 * chat model receives. Models without a template (stories260K) get CHATML_TEMPLATE: ChatML as Qwen2.5 writes
 * it, with system, user, assistant (and its tool calls) and tool messages.
 */
import { Template } from "@huggingface/jinja";
import { ModelInputError } from "./architecture.ts";

export type ChatRole = "system" | "user" | "assistant" | "tool";

export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** Assistant messages that call tools. */
  tool_calls?: { function: { name: string; arguments: Record<string, unknown> } }[];
}

/** Qwen2.5's ChatML message loop (its tokenizer_config.json), without the tool-list preamble. */
export const CHATML_TEMPLATE = `{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system") or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
`;

export interface RenderOptions {
  /** The template (default CHATML_TEMPLATE). */
  template?: string;
  /** Append the assistant's opening so the model answers (default true). */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
}

export function renderChat(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
  let template: Template;
  try {
    template = new Template(options.template ?? CHATML_TEMPLATE);
  } catch (e) {
    throw new ModelInputError(`the chat template does not parse: ${(e as Error).message}`);
  }
  try {
    return template.render({
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: options.bosToken ?? "",
      eos_token: options.eosToken ?? "",
    });
  } catch (e) {
    throw new ModelInputError(`the chat template failed on these messages: ${(e as Error).message}`);
  }
}
