/**
 * @file The `.nn` language of nnc: neural networks declared as a model block and a
 * train block. Layer kinds, activations, losses and optimizers are plain
 * identifiers here, as in nnc's own parser; `nnc check` decides what they mean.
 * Graphs: `NAME = LAYER(ARGS)(INPUT)` feeds a layer from one earlier statement, and
 * merges name their inputs as arguments (`add(a, b)`, `add([a, b])`).
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

/** Items separated by commas, with an optional trailing comma. */
function commaSep(rule) {
  return optional(seq(rule, repeat(seq(',', rule)), optional(',')));
}

module.exports = grammar({
  name: 'nn',

  extras: $ => [/\s/, '\uFEFF', $.comment],

  word: $ => $.identifier,

  rules: {
    source_file: $ => repeat(choice($.model_block, $.train_block)),

    model_block: $ => seq(
      'model',
      field('name', $.identifier),
      '{',
      repeat(choice($.input_statement, $.layer_statement)),
      '}',
    ),

    /** `input NAME: [d1, d2, ...]` */
    input_statement: $ => seq(
      'input',
      field('name', $.identifier),
      ':',
      field('shape', $._value),
    ),

    /** `NAME = LAYER(ARGS)(INPUT)`, `LAYER(ARGS)` or `LAYER`. */
    layer_statement: $ => seq(
      optional(seq(field('name', $.identifier), '=')),
      field('layer', $.identifier),
      optional(seq(
        field('arguments', $.arguments),
        optional(field('input', $.layer_input)),
      )),
    ),

    /** `(NAME)` after a layer's arguments: the one statement it reads, as nnc's
     * parser has it (a merge names its inputs among its arguments instead). */
    layer_input: $ => seq('(', field('name', $.identifier), ')'),

    train_block: $ => seq('train', '{', repeat($.setting), '}'),

    /** `key = value` inside `train`. */
    setting: $ => seq(field('key', $.identifier), '=', field('value', $._value)),

    _value: $ => choice($.number, $.string, $.boolean, $.list, $.call),

    /** A name with optional arguments: `relu`, `adam(learning_rate = 0.01)`. */
    call: $ => seq(
      field('function', $.identifier),
      optional(field('arguments', $.arguments)),
    ),

    arguments: $ => seq('(', commaSep(choice($.keyword_argument, $._value)), ')'),

    keyword_argument: $ => seq(
      field('name', $.identifier),
      '=',
      field('value', $._value),
    ),

    list: $ => seq('[', commaSep($._value), ']'),

    number: _ => token(seq(
      optional('-'),
      /[0-9]+/,
      optional(seq('.', /[0-9]+/)),
      optional(seq(/[eE]/, optional(/[+-]/), /[0-9]+/)),
    )),

    string: $ => seq(
      '"',
      repeat(choice(token.immediate(prec(1, /[^"\\\n]+/)), $.escape_sequence)),
      token.immediate('"'),
    ),

    escape_sequence: _ => token.immediate(seq('\\', /["\\]/)),

    boolean: _ => choice('true', 'false'),

    identifier: _ => /[A-Za-z_][A-Za-z0-9_]*/,

    comment: _ => token(seq('#', /[^\n]*/)),
  },
});
