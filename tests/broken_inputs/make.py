"""Writes the broken inputs that tests/hardening.rs feeds to the nnc binary.

Run from this folder: python3 make.py. The cases themselves (the command lines and
the exit codes they must end with) are listed in cases.txt.
"""
import gzip
import json
import os
import random
import struct

random.seed(20240607)


def write(name, data):
    os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
    with open(name, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# A model that checks clean; the data-side cases below change only its data line.
def model(data, inputs=4, loss="sparse_categorical_crossentropy", units=3, test=""):
    return f"""model m {{
    input x: [{inputs}]
    dense(8, activation = relu)
    dense({units}, activation = softmax)
}}

train {{
    data       = {data}
    {test}
    loss       = {loss}
    optimizer  = adam
    metrics    = [accuracy]
    epochs     = 1
    batch_size = 4
}}
"""


GOOD = model('csv("data/good.csv", target = "label")')

# ---- malformed .nn text: nnc check must report, never crash
write("nn/random_bytes.nn", bytes(random.randrange(256) for _ in range(4096)))
write("nn/random_ascii.nn", "".join(random.choice("model{}[]()=,:.#\"\n 0123456789abcdefxe-+_")
                                    for _ in range(4096)))
write("nn/empty.nn", "")
write("nn/only_spaces.nn", " \n\t\r\n   ")
write("nn/only_comment_no_newline.nn", "# nothing else")
write("nn/truncated.nn", GOOD[: len(GOOD) // 2])
write("nn/truncated_in_string.nn", 'model m { input x: [4] }\ntrain { data = csv("data/go')
write("nn/unbalanced_open.nn", "model m {\n    input x: [4\n    dense(5, activation = relu\n")
write("nn/unbalanced_close.nn", "model m {\n    input x: [4]]\n    dense(5))\n}}\n}\n")
write("nn/deep_brackets.nn", "model m { input x: " + "[" * 100000 + "\n")
write("nn/deep_parens.nn", "model m { input x: [4]\n dense(" + "(" * 100000 + "\n}")
write("nn/huge_number.nn", "model m {\n    input x: [4]\n    dense(" + "9" * 400 + ")\n}\n")
write("nn/dims_1e30.nn", "model m {\n    input x: [1000000000000000000000000000000]\n    dense(5)\n}\n")
write("nn/dims_product_overflow.nn",
      "model m {\n    input x: [4294967296, 4294967296, 4294967296, 4294967296]\n    flatten\n    dense(5)\n}\n")
write("nn/dense_billion.nn", "model m {\n    input x: [4]\n    dense(1000000000)\n}\n")
write("nn/dense_2e9_relu_chain.nn",
      "model m {\n    input x: [100000]\n    dense(100000)\n    dense(100000)\n}\n")
write("nn/float_overflow.nn",
      "model m {\n    input x: [4]\n    dropout(1e999)\n    dense(2)\n}\ntrain {\n    data = csv(\"data/good.csv\", target = \"label\")\n    loss = mse\n    optimizer = sgd(learning_rate = 1e999)\n}\n")
write("nn/negative_sizes.nn", "model m {\n    input x: [-4]\n    dense(-5)\n    conv2d(-1, kernel = -3)\n}\n")
write("nn/zero_sizes.nn", "model m {\n    input x: [0]\n    dense(0)\n}\n")
write("nn/conv_larger_than_input.nn",
      "model m {\n    input x: [3, 3, 1]\n    conv2d(8, kernel = 5)\n    maxpool2d(9)\n    flatten\n    dense(2)\n}\n")
write("nn/reshape_mismatch.nn", "model m {\n    input x: [12]\n    reshape([5, 5])\n    dense(2)\n}\n")
write("nn/not_utf8.nn", b"model m {\n    input x: [4]\n    dense(\xff\xfe5)\n}\n")
write("nn/nul_bytes.nn", b"model m {\x00\n    input x: [4]\x00\n}\n")
write("nn/bom_and_cr.nn", "\ufeffmodel m {\r    input x: [4]\r    dense(2)\r}\r")
write("nn/long_identifier.nn", "model " + "m" * 200000 + " {\n    input x: [4]\n    dense(2)\n}\n")
write("nn/many_layers.nn", "model m {\n    input x: [4]\n" + "    relu\n" * 20000 + "}\n")
write("nn/many_errors.nn", "model m {\n    input x: [4]\n" + "    dense(2, activation = rleu)\n" * 5000 + "}\n")
write("nn/bad_train_values.nn", model('csv("data/good.csv", target = "label")', test="test = split(1.5)")
      .replace("epochs     = 1", "epochs     = 0").replace("batch_size = 4", "batch_size = -1"))
write("nn/split_zero.nn", model('csv("data/good.csv", target = "label")', test="test = split(0)"))
write("nn/escape_soup.nn", 'model m { input x: [4] }\ntrain { data = csv("\\u{110000}\\q\\', )
write("nn/keywords_only.nn", "model model { input input: [input] train train }")
os.makedirs("nn/a_directory.nn", exist_ok=True)
write("nn/a_directory.nn/.keep", "")

# ---- .nn files that check clean but whose data is broken: nnc run must report
write("data/good.csv", "a,b,c,d,label\n" + "".join(
    f"{random.random():.3f},{random.random():.3f},{random.random():.3f},{random.random():.3f},{i % 3}\n"
    for i in range(40)))
write("data/ragged.csv", "a,b,c,d,label\n1,2,3,4,0\n1,2,3,1\n")
write("data/text_cell.csv", "a,b,c,d,label\n1,2,3,4,0\n1,two,3,4,1\n")
write("data/no_label.csv", "a,b,c,d,e\n1,2,3,4,0\n")
write("data/header_only.csv", "a,b,c,d,label\n")
write("data/empty.csv", "")
write("data/binary.csv", bytes(random.randrange(256) for _ in range(2048)))
write("data/label_out_of_range.csv", "a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,7\n")
write("data/label_negative.csv", "a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,-1\n")
write("data/huge_cells.csv", "a,b,c,d,label\n1e39,2,3,4,0\n1,2,3,4,1\n")
write("data/one_row.csv", "a,b,c,d,label\n1,2,3,4,0\n")
write("data/quote_soup.csv", 'a,b,c,d,label\n"1,2,3,4,0\n1,2,"3"x,4,1\n')
os.makedirs("data/dir.csv", exist_ok=True)
write("data/dir.csv/.keep", "")
for name in ["ragged", "text_cell", "no_label", "header_only", "empty", "binary",
             "label_out_of_range", "label_negative", "huge_cells", "missing", "dir", "quote_soup"]:
    write(f"run/csv_{name}.nn", model(f'csv("../data/{name}.csv", target = "label")'))
write("run/csv_one_row_split.nn",
      model('csv("../data/one_row.csv", target = "label")', test="test = split(0.5)"))


def idx(magic, dims, values):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values)


images = idx(0x00000803, [6, 2, 2], [i * 10 % 256 for i in range(24)])
labels = idx(0x00000801, [6], [0, 1, 2, 0, 1, 2])
write("data/images.idx", images)
write("data/labels.idx", labels)
write("data/bad_magic.idx", b"\x1f\x8c\x08\x00" + images[4:])
write("data/truncated.idx", images[:20])
write("data/header_cut.idx", images[:6])
write("data/labels5.idx", idx(0x00000801, [5], [0, 1, 2, 0, 1]))
write("data/labels_big.idx", idx(0x00000801, [6], [0, 1, 2, 0, 1, 200]))
write("data/huge_dims.idx", idx(0x00000803, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], []))
write("data/zero_images.idx", idx(0x00000803, [0, 28, 28], []))
write("data/zero_labels.idx", idx(0x00000801, [0], []))
write("data/cut.idx.gz", gzip.compress(images, mtime=0)[:25])
write("data/gzip_bomb_header.idx.gz", gzip.compress(idx(0x00000803, [60000, 28, 28], []) + bytes(1000), mtime=0))
for name, (im, lb, inputs) in {
    "bad_magic": ("bad_magic.idx", "labels.idx", 4),
    "truncated": ("truncated.idx", "labels.idx", 4),
    "header_cut": ("header_cut.idx", "labels.idx", 4),
    "count_mismatch": ("images.idx", "labels5.idx", 4),
    "label_out_of_range": ("images.idx", "labels_big.idx", 4),
    "size_does_not_fit": ("images.idx", "labels.idx", 784),
    "huge_dims": ("huge_dims.idx", "labels.idx", 4),
    "zero_images": ("zero_images.idx", "zero_labels.idx", 784),
    "cut_gzip": ("cut.idx.gz", "labels.idx", 4),
    "gzip_short": ("gzip_bomb_header.idx.gz", "labels.idx", 784),
    "images_are_labels": ("labels.idx", "images.idx", 4),
    "missing": ("nowhere.idx", "labels.idx", 4),
    "directory": ("dir.csv", "labels.idx", 4),
}.items():
    write(f"run/idx_{name}.nn",
          model(f'idx(images = "../data/{im}", labels = "../data/{lb}")', inputs=inputs))
write("run/mnist_missing_folder.nn", model('mnist("../data/no_mnist_here")', inputs=784))
write("run/mnist_folder_is_file.nn", model('mnist("../data/good.csv")', inputs=784))
write("run/good.nn", model('csv("../data/good.csv", target = "label")'))


# ---- --init weights for run/good.nn: dense.kernel [4, 8], dense.bias [8],
# dense_1.kernel [8, 3], dense_1.bias [3]
def safetensors(header, data, pad=True):
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(shape, offset):
    n = 1
    for d in shape:
        n *= d
    return {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}, offset + 4 * n


def weights(shapes):
    header, offset = {}, 0
    for name, shape in shapes:
        header[name], offset = f32(shape, offset)
    return safetensors(header, bytes(offset))


RIGHT = [("dense.kernel", [4, 8]), ("dense.bias", [8]), ("dense_1.kernel", [8, 3]), ("dense_1.bias", [3])]
write("weights/good.safetensors", weights(RIGHT))
write("weights/misshapen.safetensors", weights([(n, list(reversed(s)) if len(s) == 2 else [s[0] + 1])
                                                for n, s in RIGHT]))
write("weights/missing_tensor.safetensors", weights(RIGHT[:2]))
write("weights/extra_tensor.safetensors", weights(RIGHT + [("dense_9.kernel", [2, 2])]))
write("weights/random.safetensors", bytes(random.randrange(256) for _ in range(512)))
write("weights/empty.safetensors", b"")
good = weights(RIGHT)
write("weights/truncated.safetensors", good[:-7])
write("weights/header_len_max.safetensors", b"\xff" * 8 + b"{}")
write("weights/header_len_past_end.safetensors", struct.pack("<Q", 1000) + b"{}")
write("weights/header_not_json.safetensors", struct.pack("<Q", 8) + b"not json")
write("weights/offsets_overflow.safetensors", safetensors(
    {"dense.kernel": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 18446744073709551615]}}, b""))
write("weights/shape_overflow.safetensors", safetensors(
    {"dense.kernel": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 0]}}, b""))
write("weights/f16.safetensors", safetensors(
    {"dense.kernel": {"dtype": "F16", "shape": [4, 8], "data_offsets": [0, 64]}}, bytes(64)))
# Right names and shapes, every value NaN: training must stop with an error, not go on.
write("weights/nan.safetensors", good[: len(good) - 4 * (32 + 8 + 24 + 3)]
      + b"\x00\x00\xc0\x7f" * (32 + 8 + 24 + 3))
