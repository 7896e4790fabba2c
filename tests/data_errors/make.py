"""Writes the broken inputs of tests/data.rs. Run from this folder: python3 make.py"""
import gzip
import json
import struct


def write(name, data):
    with open(name, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def idx(magic, dims, values):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values)


# CSV: every problem sits at a known line and column.
write("ragged.csv", "a,b,label\n1,2,0\n3,4,1\n5,6\n7,8,1\n")
write("text_cell.csv", "a,b,label\n1,2,0\n3,4,1\n5,abc,0\n")
# Token ids for an `embedding(input_dim = 5)`: a fraction, and an id past the table.
write("token_fraction.csv", "t0,t1,t2,label\n0,1,2,0\n4,3,2,1\n1,2.5,0,0\n")
write("token_out_of_range.csv", "t0,t1,t2,label\n0,1,2,0\n4,3,2,1\n1,2,0,0\n3,5,1,1\n")
write("missing_cell.csv", "a,b,label\n1,2,0\n3,,1\n")
write("nan_cell.csv", "a,b,label\n1,2,0\n3,nan,1\n")
write("no_target.csv", "x1,x2,bening\n1,2,0\n")
write("empty.csv", "")
write("header_only.csv", "a,b,label\n")
write("no_header.csv", "1,2,0\n3,4,1\n")
write("not_csv.csv", b"\x1f\x8b\x08\x00\xff\xfe\xfd\x00binary\n\x80\x81,\x82\n")
write("label_out_of_range.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,3\n7,8,2\n")
write("label_not_binary.csv", "a,b,label\n1,2,0\n3,4,2\n")
write("label_fraction.csv", "a,b,label\n1,2,0\n3,4,1.5\n")
write("duplicate_target.csv", "a,label,label\n1,2,0\n")
write("with_notes.csv", "id,a,b,label\nx1,1,2,0\nx2,3,4,1\nx3,5,6,1\n")

# IDX: three 2x2 images and their labels, then broken variants.
images = idx(0x00000803, [3, 2, 2], range(0, 240, 20))
write("images3.idx", images)
write("labels3.idx", idx(0x00000801, [3], [0, 1, 2]))
write("labels2.idx", idx(0x00000801, [2], [0, 1]))
write("bad_magic.idx", b"PK\x03\x04" + images[4:])
write("float_images.idx", idx(0x00000D03, [3, 2, 2], range(12)))
write("truncated_images.idx", images[:16 + 7])
write("trailing_images.idx", images + b"\x00\x01")
write("huge_header.idx", idx(0x00000803, [100000, 100000, 1000], []))
write("short_header.idx", images[:10])
write("truncated_images.idx.gz", gzip.compress(images[:16 + 7], mtime=0))
write("wrong.gz", b"\x1f\x8b" + b"this is not deflate data at all" * 3)
whole = gzip.compress(images * 40, mtime=0)
write("cut.gz", whole[: len(whole) // 2])

# safetensors
def safetensors(header, data):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

write("f16.safetensors", safetensors(
    {"dense.kernel": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}, bytes(8)))
good = safetensors(
    {"dense.kernel": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16))
write("torn.safetensors", good[: len(good) - 5])
write("garbage.safetensors", "these are not weights\n")
