; Capture names follow Helix's scopes; Neovim falls back along the dots
; (`@constant.numeric` is drawn as `@constant`).

(comment) @comment

["model" "input" "train"] @keyword

(boolean) @constant.builtin.boolean
(number) @constant.numeric
(string) @string
(escape_sequence) @constant.character.escape

; The model's name, and the names layers and the input are given.
(model_block name: (identifier) @type)
(input_statement name: (identifier) @variable)
(layer_statement name: (identifier) @variable)

; Layer kinds, data sources, optimizers with arguments: `dense(...)`, `csv(...)`.
(layer_statement layer: (identifier) @function)
(call function: (identifier) @function arguments: (arguments))

; A bare name as a value: `relu`, `adam`, `sparse_categorical_crossentropy`.
(call function: (identifier) @constant . )

; A layer's inputs in a graph: `dense(64)(x)`.
(layer_statement inputs: (arguments (call function: (identifier) @variable)))

(keyword_argument name: (identifier) @variable.parameter)
(setting key: (identifier) @variable.other.member)

["=" ":"] @operator
["(" ")" "[" "]" "{" "}"] @punctuation.bracket
"," @punctuation.delimiter
