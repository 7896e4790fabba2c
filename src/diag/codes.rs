//! Every diagnostic code nnc's front end emits, with the text `nnc explain` prints.

pub const SYNTAX: &str = "E0001";
pub const NOT_UTF8: &str = "E0002";
pub const TOO_LARGE: &str = "E0003";
pub const ITEMS: &str = "E0004";
pub const INPUT: &str = "E0005";
pub const UNKNOWN_LAYER: &str = "E0006";
pub const UNKNOWN_NAME: &str = "E0007";
pub const UNKNOWN_SETTING: &str = "E0008";
pub const UNKNOWN_ARG: &str = "E0009";
pub const DUPLICATE_ARG: &str = "E0010";
pub const POSITIONAL: &str = "E0011";
pub const MISSING: &str = "E0012";
pub const TYPE: &str = "E0013";
pub const RANGE: &str = "E0014";
pub const DUPLICATE_NAME: &str = "E0015";
pub const RANK: &str = "E0016";
pub const WINDOW: &str = "E0017";
pub const RESHAPE: &str = "E0018";
pub const LOSS_OUTPUT: &str = "E0019";
pub const DATA_INPUT: &str = "E0020";
pub const TOO_BIG: &str = "E0021";
pub const SOFTMAX_ONE: &str = "E0022";
pub const DATA_FILE: &str = "E0023";
pub const NOT_FINITE: &str = "E0024";
pub const SCHEDULE_LENGTHS: &str = "E0025";
pub const CLIP_CONFLICT: &str = "E0026";
pub const CLASS_WEIGHT: &str = "E0027";
pub const UNKNOWN_MONITOR: &str = "E0030";
pub const NO_VALIDATION: &str = "E0031";
pub const VALIDATION_TWICE: &str = "E0032";
pub const PLATEAU_SCHEDULE: &str = "E0033";
pub const USED_BEFORE_DEFINED: &str = "E0035";
pub const UNKNOWN_INPUT: &str = "E0036";
pub const UNUSED_OUTPUT: &str = "E0037";
pub const MERGE_SHAPES: &str = "E0038";
pub const MERGE_INPUTS: &str = "E0039";
pub const EMBEDDING_FIRST: &str = "E0040";
pub const RESUME_PROCESSES: &str = "E0055";
pub const LINEAR_COLLAPSE: &str = "W0001";
pub const VANISHING: &str = "W0002";
pub const SOFTMAX_NOT_LAST: &str = "W0003";
pub const LOSS_ACTIVATION: &str = "W0004";
pub const LATER_STANDARDIZE: &str = "W0005";
pub const NOT_READ_WHOLE: &str = "W0006";
pub const DIVERGING: &str = "W0007";

/// (code, one-line title, longer explanation with an example and the fix).
pub const EXPLANATIONS: &[(&str, &str, &str)] = &[
    (
        SYNTAX,
        "syntax error",
        "\
The text does not follow the grammar of a `.nn` file. The message says which
token was expected and what was found instead; when a closing `)`, `]` or `}` is
missing at the end of a line, the error points at the end of that line.

    model m {
        input x: [3]
        dense(5, activation = relu      # missing `)`
    }

Fix: add the missing token. Numbers are written `128`, `0.001` or `1e-3` (not
`.5`); strings use double quotes; statements are separated by newlines.",
    ),
    (
        NOT_UTF8,
        "file is not UTF-8",
        "\
A `.nn` file must be UTF-8 text (a byte-order mark and CRLF line endings are
fine). The error names the byte offset of the first byte that is not valid UTF-8.

Fix: save the file as UTF-8.",
    ),
    (
        TOO_LARGE,
        "file too large, too deeply nested, or too many problems",
        "\
nnc refuses a source file larger than 1 MiB, and brackets `(`, `[`, `{` nested
more than 64 levels deep. Real models are a few hundred bytes with two or three
levels of nesting; these limits keep the checker fast and safe on any input.
After 100 problems in one file, the rest are counted but not shown.

Fix: check that the right file was passed to nnc.",
    ),
    (
        ITEMS,
        "missing or repeated block",
        "\
A file holds exactly one `model` block and at most one `train` block, in any
order.

    model a { input x: [3] }
    model b { input x: [3] }     # error: a second model block

Fix: keep one model block (and at most one train block) per file.",
    ),
    (
        INPUT,
        "missing, misplaced or repeated `input`",
        "\
The first statement of a model is its input, `input NAME: [d1, d2, ...]`: the
shape of one sample without the batch dimension. A model has exactly one.

    model m {
        dense(5)
        input x: [3]      # error: input must come first
    }

Fix: move the `input` statement to the top of the model block.",
    ),
    (
        UNKNOWN_LAYER,
        "unknown layer kind",
        "\
The layer kinds of nnc are `dense`, `flatten`, `dropout`, `conv2d`, `maxpool2d`,
`avgpool2d`, `batchnorm`, `reshape`, the merge layers (`add`, `subtract`,
`multiply`, `average`, `maximum`, `minimum`, `concatenate`), and one layer for each activation
(`relu`, `leaky_relu`, `tanh`, `softmax`, ...: every name that `activation =`
accepts). Keras class names such as `Dense` or `MaxPooling2D` are not
accepted; the help names the nnc spelling.

    dens(10)      # error: did you mean `dense`?",
    ),
    (
        UNKNOWN_NAME,
        "unknown name",
        "\
A value that must be one of a fixed set of names is not one of them: an
activation, an initializer, a padding (`valid`, `same`), a loss, an optimizer, a
metric, a data source (`csv`, `idx`, `mnist`) or an MNIST subset. The help names
the nearest known name.

    dense(10, activation = relux)     # error: did you mean `relu`?",
    ),
    (
        UNKNOWN_SETTING,
        "unknown train setting",
        "\
The settings of a `train` block are `data`, `test`, `validation_split`, `loss`,
`optimizer`, `metrics`, `epochs`, `batch_size`, `shuffle` and `seed`.

    train { epoch = 10 }      # error: did you mean `epochs`?",
    ),
    (
        UNKNOWN_ARG,
        "unknown argument",
        "\
A keyword argument that the layer, optimizer or data source does not take.

    dense(10, activations = relu)     # error: did you mean `activation`?

`nnc explain` lists no arguments; see the layer table in LANGUAGE.md.",
    ),
    (
        DUPLICATE_ARG,
        "argument or setting given twice",
        "\
Each argument of a call, and each setting of a `train` block, may be given once.
A positional argument and a keyword argument for the same parameter also count
as twice.

    dense(10, units = 20)     # error: `units` is given twice",
    ),
    (
        POSITIONAL,
        "bad positional argument",
        "\
Positional arguments come first, then `key = value` arguments; a call takes at
most as many positional arguments as it has parameters.

    dense(activation = relu, 10)     # error: positional after keyword

Fix: name the argument, or move it before the keyword arguments.",
    ),
    (
        MISSING,
        "missing required argument or setting",
        "\
A required argument (for example `units` of `dense`, `rate` of `dropout`,
`filters` and `kernel_size` of `conv2d`, `target` of `csv`) or a required train
setting (`data`, `loss`, `optimizer`) is missing.

    dense(activation = relu)     # error: missing `units`",
    ),
    (
        TYPE,
        "wrong type",
        "\
An argument has the wrong type: for example a string where an integer is
expected, or a float where a count is expected. Integers are accepted where a
float is expected.

    dense(\"10\")     # error: expected an integer, found a string",
    ),
    (
        RANGE,
        "value out of range",
        "\
A number is outside the range its parameter allows: sizes, counts and strides
are positive, a dropout rate is in [0, 1), a split fraction in (0, 1), a learning
rate positive. An integer literal that does not fit in 64 bits is also out of
range.

    dropout(1.5)     # error: rate must be in [0, 1)",
    ),
    (
        DUPLICATE_NAME,
        "duplicate layer name",
        "\
Layer names are unique within a model, and the input's name counts too. The
secondary label shows the first use.

    input x: [3]
    x = dense(5)     # error: `x` is already the input's name",
    ),
    (
        RANK,
        "layer does not fit its input's rank",
        "\
Each layer needs an input of a certain rank (number of dimensions, without the
batch): `dense` needs a vector `[n]`; `conv2d`, `maxpool2d` and `avgpool2d` need
an image `[h, w, c]` (channels last). The secondary label shows where the shape
came from.

    input image: [28, 28, 1]
    dense(10)     # error: dense needs a vector; add `flatten` before it

Fix: add `flatten` before a dense layer, or `reshape(shape = [h, w, c])` before
a convolution.",
    ),
    (
        WINDOW,
        "window larger than its input",
        "\
With `padding = valid`, a convolution kernel or pooling window cannot be larger
than the image it slides over: the output would have no rows or columns.

    input x: [4, 4, 1]
    conv2d(8, kernel_size = 5)     # error: 5x5 kernel on a 4x4 image

Fix: use a smaller kernel or window, or `padding = same`.",
    ),
    (
        RESHAPE,
        "reshape changes the element count",
        "\
`reshape(shape = [...])` must keep the number of elements of one sample.

    input x: [784]
    reshape(shape = [28, 28, 2])     # error: 784 elements vs 1568

One dimension may be `-1`: it is the element count over the other dimensions,
which must divide it. Two `-1` are an error.

    reshape(shape = [-1, 28])        # [28, 28]
    reshape(shape = [-1, 5])         # error: 784 is not a multiple of 5",
    ),
    (
        LOSS_OUTPUT,
        "loss does not fit the model's output",
        "\
The loss must fit the width of the last layer and of the target:
`binary_crossentropy` needs one output unit (a sigmoid probability);
`sparse_categorical_crossentropy` and `categorical_crossentropy` need one unit per
class (at least two; ten for MNIST): the data's class numbers are used as they are
by the first and turned into one-hot rows for the second;
`mse`, `mae` and `huber` compare with the single target column, so they need one
output unit.",
    ),
    (
        DATA_INPUT,
        "data does not fit the input shape",
        "\
The number of features a data source provides must equal the number of elements
of the model's input: the length of a csv `features` list, or 784 (28x28) for
MNIST. The features of one sample are reshaped, row-major, to the input shape.

    input x: [4]
    data = csv(\"iris.csv\", target = \"species\", features = [\"a\", \"b\"])   # 2 != 4",
    ),
    (
        TOO_BIG,
        "model too large for memory",
        "\
The model's parameters, or the memory one training step needs (parameters,
gradients, optimizer state and activations for one batch), exceed 16 GiB. The
message gives the byte count, and points at the layer that costs most. `nnc run`
also refuses a step larger than what this machine allows (its memory and swap,
its cgroup's limit, or `ulimit -v`), with the same advice, before training.

Fix: use smaller layers, pooling or strides before dense layers, or a smaller
batch size.",
    ),
    (
        SOFTMAX_ONE,
        "softmax over one unit",
        "\
Softmax divides each value's exponential by the sum over the last axis. Over an
axis of one value that is `exp(x) / exp(x) = 1` for every input, so the output
never changes and no gradient reaches the layers before it: the model trains
nothing.

    dense(1, activation = softmax)       # error: always 1
    loss = binary_crossentropy

Fix: for one output unit (two classes, `binary_crossentropy`) use
`activation = sigmoid`; for N classes use `dense(N, activation = softmax)` with
`sparse_categorical_crossentropy`.",
    ),
    (
        DATA_FILE,
        "a data file does not fit the train block or the model",
        "\
`nnc check` reads the data files a train block names, as `nnc run` will: a
file that is missing or unreadable, a CSV header without the target or a listed
feature column (names are case-sensitive), a test file without a training
feature column, image and label files that do not pair up, or targets that do
not fit the loss: class indices at or above the number of output units, or
binary cross-entropy targets other than 0 and 1. Files up to 64 MB are read
whole, every cell as `nnc run` reads it (warning W0006 says when a file was not).

    dense(2, activation = softmax)                       # iris has 3 classes
    data = csv(\"iris.csv\", target = \"Species\")        # the column is `species`

Fix: as the message says; `nnc check --no-data` skips reading the data.",
    ),
    (
        NOT_FINITE,
        "training made the loss or a weight NaN or infinite",
        "\
When a training step makes the loss or any weight NaN or infinite, `nnc run`
stops, re-runs that step with the reference interpreter on the same batch from
the weights before it, and reports the first value that was not finite: the
layer (or the loss) that computed it, the forward or backward pass or the
optimizer update, the tensor, the epoch and batch, and the likely cause:

- overflow in exp: an `exponential` activation read an input above 88.7,
  usually from unscaled features;
- an exploding gradient, with the gradient's norm: the weights grew step after
  step (a learning rate too large for unscaled features or targets);
- overflow: finite values whose result is beyond float32's 3.4e38.

    train {
        data      = csv(\"houses.csv\", target = \"price\")    # prices in dollars
        loss      = mse
        optimizer = sgd(learning_rate = 0.01, momentum = 0.9)
    }

Fix: `standardize = true` in the data source (and targets in small units), a
smaller learning rate, or clipped gradients.",
    ),
    (
        SCHEDULE_LENGTHS,
        "piecewise schedule with mismatched boundaries and values",
        "\
`piecewise_constant_decay` holds one learning rate up to the first boundary and
one after each boundary, so it needs exactly one more value than boundaries (as
Keras's `PiecewiseConstantDecay`).

    learning_rate = piecewise_constant_decay(boundaries = [1000, 2000],
                                             values = [0.1, 0.01])    # 3 needed

Fix: give `len(boundaries) + 1` values, e.g. `values = [0.1, 0.01, 0.001]`.",
    ),
    (
        CLIP_CONFLICT,
        "more than one kind of gradient clipping",
        "\
An optimizer clips gradients in one way: each tensor to a norm (`clipnorm`), all
of them together to a global norm (`global_clipnorm`), or each element to a
range (`clipvalue`). Keras refuses more than one of them, and so does nnc.

    optimizer = adam(clipnorm = 1.0, clipvalue = 0.5)   # error

Fix: keep one of the three.",
    ),
    (
        CLASS_WEIGHT,
        "class weights that do not fit the model or the loss",
        "\
`class_weight` multiplies each training sample's loss by the weight of its class
(Keras's `fit(class_weight=...)`): a list holds one weight per class, in class
order, so it needs as many weights as the model has classes (two for one sigmoid
unit), and only a classification loss has classes.

    dense(3, activation = softmax)
    class_weight = [1.0, 2.0]          # error: 3 classes

Fix: one weight per class, or `class_weight = balanced`, which weighs each class
by `n_samples / (n_classes * count)` of the training rows (scikit-learn's
`balanced`).",
    ),
    (
        UNKNOWN_MONITOR,
        "a callback monitors a value the run does not log",
        "\
`early_stopping`, `reduce_lr_on_plateau` and `model_checkpoint` watch one value
that `nnc run` logs after every epoch: `loss`, each metric of the `metrics`
setting, and, with validation data, `val_loss` and `val_` plus each metric. A
metric that is not in `metrics` is not computed, so it cannot be watched.

    metrics   = [accuracy]
    callbacks = [early_stopping(monitor = val_acuracy)]     # `val_accuracy`

Fix: monitor a logged name (the help lists them), or add the metric to `metrics`.",
    ),
    (
        NO_VALIDATION,
        "a callback monitors a validation value without validation data",
        "\
Names starting with `val_` are computed on validation data after every epoch,
and the train block has none. `early_stopping`, `reduce_lr_on_plateau` and
`model_checkpoint(..., save_best_only = true)` monitor `val_loss` unless told
otherwise, as in Keras.

    callbacks = [early_stopping(patience = 3)]     # no validation data

Fix: add `validation_data = csv(...)` (any data source) or `validation_split = 0.2`
to the train block, or monitor a training value (`monitor = loss`).",
    ),
    (
        VALIDATION_TWICE,
        "both `validation_data` and `validation_split`",
        "\
A run validates on one set: `validation_split` holds out a fraction of the
training rows, `validation_data` names a separate source. Keras silently ignores
`validation_split` when both are given; nnc asks which one is meant.

    validation_split = 0.2
    validation_data  = csv(\"val.csv\", target = \"y\")

Fix: remove one of the two settings.",
    ),
    (
        PLATEAU_SCHEDULE,
        "`reduce_lr_on_plateau` with a learning-rate schedule",
        "\
A learning-rate schedule (`exponential_decay(...)`, `cosine_decay(...)`, ...)
computes the rate of every step from the step count, so there is no rate for
`reduce_lr_on_plateau` to lower. Keras refuses the same combination (the
optimizer's learning rate is not settable).

    optimizer = adam(learning_rate = exponential_decay(0.01, decay_steps = 100,
                                                       decay_rate = 0.9))
    callbacks = [reduce_lr_on_plateau(patience = 3)]

Fix: give `learning_rate` a number, or drop one of the two.",
    ),
    (
        USED_BEFORE_DEFINED,
        "name used before its definition",
        "\
A layer reads a statement by name (`dense(8)(NAME)`, `add(a, b)`), but that
statement comes later in the model, or is the layer itself. Statements run in
order: a layer can read only the statements above it.

    model m {
        input x: [4]
        s = add(a, x)        # error: `a` is defined below
        a = dense(4)(x)
    }

Fix: move the statement that defines the name above the one that reads it.",
    ),
    (
        UNKNOWN_INPUT,
        "no statement has this name",
        "\
A layer reads a statement by name, but no statement of the model is named so.
The help names the nearest name defined above.

    model m {
        input x: [4]
        hidden = dense(8)(x)
        out = dense(1)(hiden)    # error: did you mean `hidden`?
    }

Fix: correct the name, or name the statement you meant (`hidden = dense(8)`).",
    ),
    (
        UNUSED_OUTPUT,
        "a statement's output is never read",
        "\
The model's output is its last statement. Every other statement must be read
by a later one, by name or as the statement just above a layer without
`(INPUT)`: an output nothing reads would be computed and trained for nothing
(Keras would leave such a branch out of the model without a word).

    model m {
        input x: [4]
        a = dense(8)
        b = dense(8)(x)          # `a` is never read
        dense(1)
    }

Fix: feed the branch to a later layer (`concatenate(a, b)`), or remove it.",
    ),
    (
        MERGE_SHAPES,
        "merged inputs of different shapes",
        "\
`add`, `subtract`, `multiply`, `average`, `maximum` and `minimum` combine their
inputs element by element, so every input must have the same shape.
`concatenate(a, b, axis = -1)` joins its inputs along `axis`: they must have
one rank and agree on every other axis. Each input's shape is labelled where it
is defined.

    model m {
        input x: [4]
        a = dense(8)(x)
        b = dense(6)(x)
        add(a, b)                # error: [8] and [6]
    }

Fix: make the branches agree (here `dense(8)` on both), or join them with
`concatenate`.",
    ),
    (
        MERGE_INPUTS,
        "a merge layer's inputs are malformed",
        "\
A merge layer names two or more earlier statements as its positional
arguments: `add(a, b)`, or Keras's list `add([a, b])`. `subtract` takes exactly
two (`a - b`). A merge takes no `(INPUT)` after its arguments.

    add(a)                   # error: one input
    subtract(a, b, c)        # error: three inputs

Fix: name every statement to merge inside the parentheses.",
    ),
    (
        EMBEDDING_FIRST,
        "`embedding` does not read the model's input",
        "\
`embedding` turns token ids (whole numbers from the data) into vectors, so it
reads the model's input and nothing else, and the input is one sample's ids, a
vector `[n]`.

    input x: [64]
    dense(32)
    embedding(17, 8)          # error: reads dense's outputs, which are not ids

Fix: put `embedding` right after `input`, or name the input it reads
(`embedding(17, 8)(x)`). The data values must be whole numbers from 0 to
`input_dim - 1`; `nnc check` and `nnc run` name the row and column of any other
value.",
    ),
    (
        RESUME_PROCESSES,
        "checkpoint of another number of processes",
        "\
`nnc run --resume FILE` continues a run with the number of processes that wrote
the checkpoint: 1 for `nnc run`, N for `mpirun -np N nnc run`. Each process
trains its own shard of every batch, so the rounding of the summed gradients,
the batch normalization statistics and the dropout masks depend on N; a resumed
run ends with the same bits as an uninterrupted one only with the same N.

    mpirun -np 2 nnc run model.nn --checkpoint run.checkpoint
    nnc run model.nn --resume run.checkpoint      # error: checkpointed by 2

Fix: resume with the same `mpirun -np N` (the message names it). To continue
with another number of processes, start a new run from the weights instead:
`--save` (or `model_checkpoint`) writes them, and `nnc run --init FILE` starts
from them, with a fresh optimizer state and epoch count.",
    ),
    (
        LINEAR_COLLAPSE,
        "two linear layers in a row",
        "\
Two `dense` layers with no nonlinearity between them compute one linear map:
the first adds parameters but no expressive power.

    dense(64)              # activation defaults to linear
    dense(10)              # warning

Fix: give the first one an activation, e.g. `dense(64, activation = relu)`.",
    ),
    (
        VANISHING,
        "sigmoid or tanh in a deep stack",
        "\
In a stack of four or more dense or conv2d layers, `sigmoid` and `tanh` in the
hidden layers saturate and their gradients vanish, so the early layers barely
learn.

Fix: use `relu`, `gelu` or `silu` in hidden layers; keep `sigmoid` for a binary
output.",
    ),
    (
        SOFTMAX_NOT_LAST,
        "softmax before the last layer",
        "\
`softmax` turns the last axis into a probability distribution; that is what an
output layer does. In a hidden layer it squashes the signal and slows learning.

Fix: use `relu` (or another activation) in hidden layers; put `softmax` last.",
    ),
    (
        LOSS_ACTIVATION,
        "loss expects probabilities",
        "\
The cross-entropy losses expect probabilities: `categorical_crossentropy` and
`sparse_categorical_crossentropy` a `softmax` output, `binary_crossentropy` a
`sigmoid` output. Without one, the loss is computed on raw outputs.

Fix: end the model with `activation = softmax` (or `sigmoid` for one unit).",
    ),
    (
        LATER_STANDARDIZE,
        "`standardize` on a test source",
        "\
A test source is always transformed exactly as the training rows were: with
`standardize = true` on `data`, its features are z-scored with the mean and
standard deviation of the training rows; otherwise they are used as they are.
Its own `standardize` argument would change the numbers the weights see, so it
is ignored. Its columns are found by header name, in any order.

    data = csv(\"train.csv\", target = \"y\", standardize = true)
    test = csv(\"test.csv\", target = \"y\", standardize = false)   # warning: ignored

Fix: remove `standardize` from the test source.",
    ),
    (
        NOT_READ_WHOLE,
        "data file not read whole by `nnc check`",
        "\
`nnc check` reads data files up to 64 MB whole, as `nnc run` will, to check
every cell and the targets against the loss and the model's output (class
indices, 0 or 1). A larger file is only checked up to its header, so that
`check` stays fast; `nnc run` checks the whole file as it loads it, and reports
a problem there at the line naming the file.",
    ),
    (
        DIVERGING,
        "the loss grew tenfold over an epoch",
        "\
The mean loss of an epoch is at least ten times the one before (for the first
epoch, ten times its first batch's loss): training is diverging, and the loss
will usually become infinite or NaN a few epochs later. nnc warns once per run.

Fix: a smaller learning rate, `standardize = true` in the data source (and
targets in small units for a regression), or clipped gradients.",
    ),
];

/// The explanation of `code` (case-insensitive), if nnc has one.
pub fn explain(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    EXPLANATIONS
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(code.trim()))
        .copied()
}
