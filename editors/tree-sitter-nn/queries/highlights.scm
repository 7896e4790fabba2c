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

; A bare name among a layer's own arguments is a statement: a merge's inputs,
; `add(a, b)`, `add([a, b])`. After the rule above, which it overrides (the later
; pattern wins). Naming the merges here would not work: the highlighter keeps one
; match per captured node, so all but the last input of a merge would lose theirs.
(layer_statement arguments: (arguments (call function: (identifier) @variable . )))
(layer_statement arguments: (arguments (list (call function: (identifier) @variable . ))))

; A layer's input in a graph: `dense(64)(x)`.
(layer_input name: (identifier) @variable)

(keyword_argument name: (identifier) @variable.parameter)
(setting key: (identifier) @variable.other.member)

["=" ":"] @operator
["(" ")" "[" "]" "{" "}"] @punctuation.bracket
"," @punctuation.delimiter
