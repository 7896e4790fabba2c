//! IDX files (the MNIST format), gzip-compressed or raw.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
//! dimensions), one big-endian u32 per dimension, then the values row-major. nnc reads
//! unsigned-byte files: images `0x00000803` (count, rows, columns) and labels
//! `0x00000801` (count).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::error::{Cut, DataError, DataErrorKind as K};
use super::{Dataset, Features};
use crate::sema::model::MnistSubset;

/// The most float32 data nnc loads into memory from one data source: refused before
/// any allocation, from the header's dimensions alone.
pub const MEMORY_LIMIT_BYTES: u64 = 16 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// Images as features in [0, 1] (`feature_count = rows * columns`) and labels as targets.
pub fn read(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let (image_dims, pixels) = read_u8(images, 3, "image", true)?;
    let (label_dims, classes) = read_u8(labels, 1, "label", true)?;
    if image_dims[0] != label_dims[0] {
        return Err(pairing(images, image_dims[0], labels, label_dims[0]));
    }
    let rows = image_dims[0];
    if image_dims.contains(&0) {
        return Err(DataError::in_file(images, K::NoPixels { dims: image_dims }));
    }
    Ok(Dataset {
        features: Features::Pixels(pixels),
        feature_count: image_dims[1] * image_dims[2],
        targets: classes.iter().map(|&c| f32::from(c)).collect(),
        target_width: 1,
        rows,
    })
}

/// An image file alone (`nnc predict`): `(count, rows * columns, pixels)`.
pub fn read_images(images: &Path) -> Result<(usize, usize, Vec<u8>), DataError> {
    let (dims, pixels) = read_u8(images, 3, "image", true)?;
    if dims.contains(&0) {
        return Err(DataError::in_file(images, K::NoPixels { dims }));
    }
    Ok((dims[0], dims[1] * dims[2], pixels))
}

/// The image and label files of one MNIST subset in `folder`.
///
/// Looks for the standard names (`train-images-idx3-ubyte.gz`, ...), then the same
/// names un-gzipped, then the dotted variant (`train-images.idx3-ubyte`).
/// The error of an image file of `images` images and a label file of `labels` labels.
pub fn pairing(images_file: &Path, images: usize, labels_file: &Path, labels: usize) -> DataError {
    DataError::in_file(
        images_file,
        K::ImageLabelCount {
            images,
            labels_file: labels_file.to_path_buf(),
            labels,
        },
    )
}

pub fn mnist_paths(folder: &Path, subset: MnistSubset) -> Result<(PathBuf, PathBuf), DataError> {
    if !folder.is_dir() {
        return Err(DataError::in_file(folder, K::NoFolder));
    }
    let prefix = match subset {
        MnistSubset::Train => "train",
        MnistSubset::Test => "t10k",
    };
    let find = |kind: &str, dims: u8| -> Result<PathBuf, DataError> {
        let candidates = [
            format!("{prefix}-{kind}-idx{dims}-ubyte.gz"),
            format!("{prefix}-{kind}-idx{dims}-ubyte"),
            format!("{prefix}-{kind}.idx{dims}-ubyte"),
        ];
        candidates
            .iter()
            .map(|name| folder.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                DataError::in_file(
                    folder,
                    K::NoMnistFile {
                        kind: kind.into(),
                        candidates: candidates.to_vec(),
                    },
                )
            })
    };
    Ok((find("images", 3)?, find("labels", 1)?))
}

/// Reads one MNIST subset from `folder`.
pub fn mnist(folder: &Path, subset: MnistSubset) -> Result<Dataset, DataError> {
    let (images, labels) = mnist_paths(folder, subset)?;
    read(&images, &labels)
}

/// The dimensions of an image file (`[count, rows, columns]`), from its header alone
/// (a raw file's length is checked against them too).
pub fn image_dims(images: &Path) -> Result<Vec<usize>, DataError> {
    read_u8(images, 3, "image", false).map(|(dims, _)| dims)
}

/// The number of labels in a label file, from its header alone.
pub fn label_count(labels: &Path) -> Result<usize, DataError> {
    read_u8(labels, 1, "label", false).map(|(dims, _)| dims[0])
}

/// Every label of a label file.
pub fn labels(labels: &Path) -> Result<Vec<u8>, DataError> {
    read_u8(labels, 1, "label", true).map(|(_, values)| values)
}

/// Reads an unsigned-byte IDX file with `ndims` dimensions: (dims, values), or only
/// the dims (and no values) when `values` is false.
fn read_u8(
    path: &Path,
    ndims: u8,
    what: &str,
    values: bool,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let err = |kind| DataError::in_file(path, kind);
    let cannot_read = |e: std::io::Error| {
        err(K::CannotRead {
            what: Some(format!("the {what} file")),
            reason: e.to_string(),
        })
    };
    let file = File::open(path).map_err(cannot_read)?;
    let file_len = file.metadata().map(|m| m.len()).ok();
    let mut buffered = BufReader::new(file);
    let starts_gzip = buffered
        .fill_buf()
        .map_err(cannot_read)?
        .starts_with(&GZIP_MAGIC);
    let mut reader: Box<dyn Read> = if starts_gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let read_err = |e: std::io::Error| {
        if starts_gzip {
            err(K::BadGzip {
                reason: e.to_string(),
            })
        } else {
            cannot_read(e)
        }
    };
    // Offsets in messages are in the decompressed data when the file is gzip.
    let truncated = |ends_at: u64, cut: Cut| {
        err(K::Truncated {
            ends_at,
            gzip: starts_gzip,
            cut,
        })
    };

    let mut magic = [0u8; 4];
    let got = read_full(&mut reader, &mut magic).map_err(read_err)?;
    if got < magic.len() {
        return Err(truncated(got as u64, Cut::Magic));
    }
    let expected_magic = [0, 0, TYPE_U8, ndims];
    if magic != expected_magic {
        return Err(err(K::BadMagic {
            found: magic,
            expected: expected_magic,
            what: what.into(),
        }));
    }

    let mut raw_dims = vec![0u8; 4 * usize::from(ndims)];
    let got = read_full(&mut reader, &mut raw_dims).map_err(read_err)?;
    if got < raw_dims.len() {
        return Err(truncated(
            4 + got as u64,
            Cut::Header {
                header_bytes: 4 + raw_dims.len() as u64,
            },
        ));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let header_len = 4 + raw_dims.len() as u64;
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ");
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n.checked_mul(4).is_some_and(|b| b <= MEMORY_LIMIT_BYTES))
        .ok_or_else(|| {
            err(K::TooLarge {
                shape: shape.clone(),
                limit_bytes: MEMORY_LIMIT_BYTES,
            })
        })?;
    let expected_len = header_len + count;
    let cut_values = || Cut::Values {
        shape: shape.clone(),
        expected_bytes: expected_len,
    };
    // A raw file's size is known up front: refuse a short one before reading it.
    if !starts_gzip {
        if let Some(len) = file_len.filter(|&len| len < expected_len) {
            return Err(truncated(len, cut_values()));
        }
    }
    if !values {
        return Ok((dims, Vec::new()));
    }

    let mut values = Vec::new();
    reader
        .by_ref()
        .take(count)
        .read_to_end(&mut values)
        .map_err(read_err)?;
    if (values.len() as u64) < count {
        return Err(truncated(header_len + values.len() as u64, cut_values()));
    }
    let mut extra = [0u8; 1];
    if read_full(&mut reader, &mut extra).map_err(read_err)? > 0 {
        return Err(err(K::TrailingData {
            ends_at: expected_len,
            gzip: starts_gzip,
            shape,
        }));
    }
    Ok((dims, values))
}

/// Like `read_exact`, but returns how many bytes were read before the end of the data.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
