//! A connection's last request's header fields as Python strings: clients
//! repeat most of them on every request of a connection (Host, User-Agent,
//! Accept..., cookies), and reusing the strings skips decoding, allocating
//! and freeing them again (and the key lookup).

use pyo3::prelude::*;
use pyo3::types::PyString;

/// Bytes of header text one connection remembers.
const RECENT_FIELD_BYTES: usize = 4 * 1024;

/// The remembered fields, by position in the head.
#[derive(Default)]
pub(crate) struct RecentFields {
    fields: Vec<Option<RecentField>>,
    bytes: usize,
}

/// One field's bytes and the key and value strings made from them.
pub(crate) struct RecentField {
    name: Box<[u8]>,
    value: Box<[u8]>,
    pub key: Py<PyString>,
    pub text: Py<PyString>,
}

impl RecentFields {
    /// The strings of field `index` if it is the same as last time.
    pub(crate) fn get(&self, index: usize, name: &[u8], value: &[u8]) -> Option<&RecentField> {
        self.fields
            .get(index)?
            .as_ref()
            .filter(|field| *field.name == *name && *field.value == *value)
    }

    /// Remember field `index` (within the byte budget).
    pub(crate) fn remember(
        &mut self,
        index: usize,
        field: (&[u8], &[u8]),
        key: &Bound<'_, PyString>,
        text: &Bound<'_, PyString>,
    ) {
        if index >= self.fields.len() {
            self.fields.resize_with(index + 1, || None);
        }
        if let Some(old) = self.fields[index].take() {
            self.bytes -= old.name.len() + old.value.len();
        }
        let (name, value) = field;
        let size = name.len() + value.len();
        if self.bytes + size > RECENT_FIELD_BYTES {
            return;
        }
        self.bytes += size;
        self.fields[index] = Some(RecentField {
            name: name.into(),
            value: value.into(),
            key: key.clone().unbind(),
            text: text.clone().unbind(),
        });
    }
}
