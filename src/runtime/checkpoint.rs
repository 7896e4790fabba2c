//! Weights on disk: safetensors files of float32 tensors named `LAYER.param`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};

/// A float32 tensor borrowed for serialization.
struct F32View<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // safetensors stores little-endian bytes whatever the host order.
        Cow::Owned(self.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Writes `tensors` (name, shape, values) to `path` atomically: a temporary file in
/// the same folder is written, flushed to disk and renamed over `path`, so `path`
/// is always either the old file or the complete new one.
pub fn save(path: &Path, tensors: &[(String, Vec<usize>, &[f32])]) -> Result<(), String> {
    save_with_metadata(path, tensors, None)
}

/// `save`, with string pairs in the safetensors header's `__metadata__` (what
/// `runtime::trained` stores: the data preparation, the source hash, the version).
pub fn save_with_metadata(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<Metadata>,
) -> Result<(), String> {
    let file = path.display();
    let mut names = HashSet::new();
    for (name, shape, data) in tensors {
        if !names.insert(name.as_str()) {
            return Err(format!("{file}: two tensors are named `{name}`"));
        }
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if elements != Some(data.len()) {
            return Err(format!(
                "{file}: tensor `{name}` has {} values but shape {shape:?}",
                data.len()
            ));
        }
    }
    let views = tensors.iter().map(|(name, shape, data)| {
        (
            name.as_str(),
            F32View {
                shape: shape.as_slice(),
                data,
            },
        )
    });
    let mut bytes = safetensors::tensor::serialize(views, &None)
        .map_err(|e| format!("{file}: cannot encode the weights: {e}"))?;
    if let Some(metadata) = metadata {
        bytes = with_metadata(&bytes, &metadata)
            .ok_or_else(|| format!("{file}: cannot encode the weights' metadata"))?;
    }

    write_atomically(path, &bytes).map_err(|e| format!("{file}: cannot write the weights: {e}"))
}

/// `bytes` (a safetensors file) with `metadata` in its header. safetensors would
/// write the pairs in a hash map's order, different from run to run; here they go
/// in sorted, so that one seed's weights are the same bytes every time. The tensor
/// entries and data are unchanged (their offsets count from the data's start).
fn with_metadata(bytes: &[u8], metadata: &Metadata) -> Option<Vec<u8>> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = std::str::from_utf8(bytes.get(8..8 + n)?).ok()?.trim_end();
    let rest = header.strip_prefix('{')?.trim_start();
    let mut text = format!(
        "{{\"__metadata__\":{}",
        serde_json::to_string(metadata).ok()?
    );
    if !rest.starts_with('}') {
        text.push(',');
    }
    text.push_str(rest);
    // The data starts 8-byte aligned, as safetensors pads it.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Some(out)
}

/// Writes `bytes` to `path` so that `path` is always either the old file or the
/// complete new one: a temporary file beside it, flushed to disk, then renamed. An
/// existing file's permissions are kept. Every file nnc writes (weights,
/// predictions, ONNX models, formatted sources) goes through here.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = temp_path(path).map_err(std::io::Error::other)?;
    let written = write_synced(&temp, bytes)
        .and_then(|()| match fs::metadata(path) {
            Ok(old) => fs::set_permissions(&temp, old.permissions()),
            Err(_) => Ok(()),
        })
        .and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_parent(path);
    Ok(())
}

/// Checks, before any training, that `path` could be written: it is not a folder,
/// and a file can be created beside it. Training for hours and then failing to save
/// would lose the user's work. `what` names the setting or flag that asks for it
/// (`--save`), and `example` a file name to suggest.
pub fn check_writable(path: &Path, what: &str, example: &str) -> Result<(), String> {
    let file = path.display();
    if path.is_dir() {
        return Err(format!(
            "{file}: is a folder; {what} needs a file name in it, e.g. {}",
            path.join(example).display()
        ));
    }
    let temp = temp_path(path)?;
    match File::create(&temp) {
        Ok(_) => {
            // Best effort, as in `save`: the probe is ours and empty.
            let _ = fs::remove_file(&temp);
            Ok(())
        }
        Err(e) => Err(format!("{file}: cannot write there ({what}): {e}")),
    }
}

/// Reads the tensors `expected` (name, shape) from `path`, in that order.
///
/// Every missing, extra, misshapen or non-float32 tensor is named in one message.
pub fn load(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<Vec<Vec<f32>>, String> {
    load_with_metadata(path, expected).map(|(values, _)| values)
}

/// The string pairs of a safetensors header's `__metadata__`, sorted by key.
pub type Metadata = BTreeMap<String, String>;

/// `load`, with the header's `__metadata__` (empty when the file has none).
pub fn load_with_metadata(
    path: &Path,
    expected: &[(String, Vec<usize>)],
) -> Result<(Vec<Vec<f32>>, Metadata), String> {
    let file = path.display();
    let bytes = read_bounded(path, expected)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{file}: not a valid safetensors file: {}", reason(&e)))?;
    let metadata = SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();

    let wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(expected.len());
    for (name, shape) in expected {
        let view = match st.tensor(name) {
            Ok(view) => view,
            Err(_) => {
                problems.push(format!("tensor `{name}` {shape:?} is missing"));
                continue;
            }
        };
        if view.dtype() != Dtype::F32 {
            problems.push(format!(
                "tensor `{name}` is {:?}; nnc reads float32 (F32) tensors",
                view.dtype()
            ));
        } else if view.shape() != shape.as_slice() {
            problems.push(format!(
                "tensor `{name}` has shape {:?}, the model expects {shape:?}",
                view.shape()
            ));
        } else {
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            // A NaN or infinite weight would poison every output it touches, and
            // training would then blame the learning rate.
            match values.iter().position(|v| !v.is_finite()) {
                Some(i) => problems.push(format!(
                    "tensor `{name}` holds {} at element {i} (of {}); weights must be finite",
                    values[i],
                    values.len()
                )),
                None => out.push(values),
            }
        }
    }
    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .map(String::as_str)
        .filter(|n| !wanted.contains(n))
        .collect();
    extra.sort_unstable();
    for name in extra {
        problems.push(format!("tensor `{name}` is not a weight of the model"));
    }
    if problems.is_empty() {
        Ok((out, metadata))
    } else {
        Err(format!(
            "{file}: the weights do not fit the model:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// The `__metadata__` of the safetensors file `path`, reading only its header.
pub fn read_metadata(path: &Path) -> Result<Metadata, String> {
    let file = path.display();
    let cant = |e: std::io::Error| format!("{file}: cannot read it: {e}");
    let mut f = File::open(path).map_err(cant)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        format!(
            "{file}: not a valid safetensors file: {}",
            reason(&SafeTensorError::HeaderTooSmall)
        )
    })?;
    let n = u64::from_le_bytes(len);
    // safetensors' own limit on a header.
    if n > 100_000_000 {
        return Err(format!(
            "{file}: not a valid safetensors file: {}",
            reason(&SafeTensorError::HeaderTooLarge)
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| {
        format!(
            "{file}: not a valid safetensors file: {}",
            reason(&SafeTensorError::InvalidHeaderLength)
        )
    })?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: Metadata,
    }
    serde_json::from_slice::<Header>(&header)
        .map(|h| h.metadata)
        .map_err(|_| {
            format!(
                "{file}: not a valid safetensors file: {}",
                reason(&SafeTensorError::InvalidHeader)
            )
        })
}

/// Reads `path`, refusing one far larger than the weights `expected` take (a device
/// such as /dev/zero never ends; a huge wrong file would fill the memory): at most
/// twice their bytes plus 256 MiB, room for the largest safetensors header and more.
fn read_bounded(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<Vec<u8>, String> {
    let file = path.display();
    let cant = |e: std::io::Error| format!("{file}: cannot read the weights: {e}");
    let weights: u64 = expected
        .iter()
        .map(|(_, shape)| shape.iter().fold(4u64, |a, &d| a.saturating_mul(d as u64)))
        .fold(0, u64::saturating_add);
    let limit = weights.saturating_mul(2).saturating_add(256 << 20);
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(cant)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cant)?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{file}: the file goes on past {limit} bytes, far more than the weights of this \
             model take ({weights} bytes); is it the right file?"
        ));
    }
    Ok(bytes)
}

fn reason(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            "the file is shorter than the 8-byte header length (empty or truncated)".into()
        }
        SafeTensorError::InvalidHeaderLength => {
            "the header runs past the end of the file (truncated?)".into()
        }
        SafeTensorError::HeaderTooLarge => {
            "its first 8 bytes are not a plausible header length".into()
        }
        SafeTensorError::MetadataIncompleteBuffer
        | SafeTensorError::InvalidOffset(_)
        | SafeTensorError::TensorInvalidInfo => {
            "the tensor data does not match the header (truncated or corrupt file)".into()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization
        | SafeTensorError::JsonError(_) => "the header is not safetensors JSON".into(),
        SafeTensorError::ValidationOverflow => "a tensor's size overflows".into(),
        other => other.to_string(),
    }
}

/// A fresh name beside `path`, so that the rename stays on one file system.
fn temp_path(path: &Path) -> Result<PathBuf, String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp{}", std::process::id()));
    Ok(path.with_file_name(temp))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes the rename itself durable; not every platform can open a folder, so best effort.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_sorted_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let tensors = [("d.kernel".to_string(), vec![2, 3], &kernel[..])];
        let meta: Metadata = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        save_with_metadata(&a, &tensors, Some(meta.clone())).unwrap();
        save_with_metadata(&b, &tensors, Some(meta.clone())).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        let (values, read) = load_with_metadata(&a, &[("d.kernel".into(), vec![2, 3])]).unwrap();
        assert_eq!(values, vec![kernel.to_vec()]);
        assert_eq!(read, meta);
        // The header stays 8-byte aligned, as safetensors writes it.
        let bytes = fs::read(&a).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
    }
}
