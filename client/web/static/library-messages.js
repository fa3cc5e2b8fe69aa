// The library panel's messages, in the catalogue's form: {name} placeholders, {one, other} plural forms.
const MESSAGES = {
  "library.state.watching": "Watching for changes",
  "library.state.indexing": { one: "Indexing {done} of {count} file", other: "Indexing {done} of {count} files" },
  "library.state.eta": "{state} · about {time} left",
  "library.state.scanning": "Looking for files",
  "library.state.scanningCount": {
    one: "Looking for files ({count} file so far)",
    other: "Looking for files ({count} files so far)",
  },
  "library.state.error": "Cannot watch the folder",
  "library.state.errorWhy": "Cannot watch the folder: {message}",
  "library.state.idle": "Not watched: no indexer is running (start `clipsearch serve`)",
  "library.state.pending": "Waiting for the indexer",
  "library.roots": "Folders under {roots} can be added. Uploads: photos up to {photo}, videos up to {video}.",
  "library.pathExample": "{root}/Pictures",
  "library.added": "Added “{name}”: its photos and videos are being indexed into {collection}.",
  "library.removed": {
    one: "Removed “{name}”: {count} item left the index; the files stay in the folder.",
    other: "Removed “{name}”: {count} items left the index; the files stay in the folder.",
  },
  "library.facts": { one: "Collection {collection} · {count} item", other: "Collection {collection} · {count} items" },
  "library.progress": "Indexing {name}",
  "library.failures": { one: "{count} file could not be indexed", other: "{count} files could not be indexed" },
  "library.confirmRemove": {
    one: "Remove “{name}” and its {count} item from the search index? The files stay in the folder.",
    other: "Remove “{name}” and its {count} items from the search index? The files stay in the folder.",
  },
  "library.rescanned": "The indexer will look through the folder again.",
  "upload.waiting": "waiting",
  "upload.progress": "{percent}%",
  "upload.added": "added",
  "upload.addedAs": "added as {name}",
  "upload.empty": "empty file, not sent",
  "upload.tooLarge": "{size}: larger than the limit of {limit}",
  "upload.cutOff": "The upload was cut off: the server did not take the file.",
  "upload.refused": "Refused (HTTP {status}).",
  "time.s": "{value} s",
  "time.min": "{value} min",
  "time.h": "{value} h",
};

export function t(key, params = {}) {
  const entry = MESSAGES[key];
  if (entry === undefined) return key;
  const form = typeof entry === "string" ? entry : params.count === 1 ? entry.one : entry.other;
  return form.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}
