"""The Lua scripts that write items: an atomic batch upsert, and removing sources from items."""

from __future__ import annotations

from search_service.storage import DIR_DIGEST_DIGITS

# Shared by the Lua scripts: splitting a multi-valued field and deriving a source's directories.
_LUA_COMMON = r"""
local SEP, F_SOURCES, F_DIRS = ARGV[1], ARGV[2], ARGV[3]
local DIGITS = {digits}
local function split(s)
  local out = {}
  if not s or s == '' then return out end
  local start = 1
  while true do
    local i = string.find(s, SEP, start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
-- The SHA-1 of every ancestor directory URI of every source (file:///a/b/c.jpg: file:///, file:///a/,
-- file:///a/b/), its first DIGITS hex digits (storage.DIR_DIGEST_DIGITS). Digests keep the field small: a
-- deep path's directories, spelled out, grow quadratically.
local function dirs_of(sources)
  local out, seen = {}, {}
  for _, src in ipairs(sources) do
    local _, authority_end = string.find(src, '://', 1, true)
    local pos
    if authority_end then pos = authority_end + 1 else pos = (string.find(src, ':', 1, true) or 0) + 1 end
    while true do
      local i = string.find(src, '/', pos, true)
      if not i or i >= #src then break end
      local dir = string.sub(redis.sha1hex(string.sub(src, 1, i)), 1, DIGITS)
      if not seen[dir] then seen[dir] = true; out[#out + 1] = dir end
      pos = i + 1
    end
  end
  return out
end
-- Writes the sources and their directories with one HSET: every write re-indexes the item.
local function set_sources(key, sources)
  if #sources == 0 then redis.call('HDEL', key, F_SOURCES, F_DIRS); return end
  local dirs = dirs_of(sources)
  if #dirs == 0 then redis.call('HDEL', key, F_DIRS) end
  local fields = {F_SOURCES, table.concat(sources, SEP)}
  if #dirs > 0 then fields[3] = F_DIRS; fields[4] = table.concat(dirs, SEP) end
  redis.call('HSET', key, unpack(fields))
end
"""
_LUA_COMMON = _LUA_COMMON.replace("{digits}", str(DIR_DIGEST_DIGITS))

# Checks, before an upsert writes anything, that the index is still the generation the service resolved
# (a reindex may have switched it) and that the request's model is the one the index holds, recording it when
# the index records none. KEYS[1]: the catalog hash. ARGV[4]: its generation field; ARGV[5]: the generation
# expected; ARGV[6]: the model fields' prefix; ARGV[7..10]: model id, family, dimension, fingerprint (id ''
# when the request names no model); ARGV[11]: '1' to record the model where none is. Same rule as
# catalog.EmbeddingModel.same_as.
_MODEL_GUARD = r"""
local META, GEN_FIELD, WANT_GEN, MP = KEYS[1], ARGV[4], ARGV[5], ARGV[6]
local m_id, m_family, m_dim, m_fp, may_record = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local gen = redis.call('HGET', META, GEN_FIELD)
if not gen then if GEN_FIELD == 'generation' then gen = '0' else gen = '' end end
if gen ~= WANT_GEN then return redis.error_reply('STALE the index changed; resolve it again') end
if m_id ~= '' then
  local r = redis.call('HMGET', META, MP .. 'id', MP .. 'family', MP .. 'dimension', MP .. 'fingerprint')
  if r[1] and r[1] ~= '' then
    local fam, fp = r[2] or '', r[4] or ''
    local same
    if fp ~= '' and m_fp ~= '' then
      same = fp == m_fp
    else
      same = r[1] == m_id and r[3] == m_dim and (fam == '' or m_family == '' or fam == m_family)
    end
    if not same then return redis.error_reply('MODELMISMATCH') end
    if fam == '' and m_family ~= '' then redis.call('HSET', META, MP .. 'family', m_family) end
    if fp == '' and m_fp ~= '' then redis.call('HSET', META, MP .. 'fingerprint', m_fp) end
  elseif may_record == '1' then
    redis.call('HSET', META, MP .. 'id', m_id, MP .. 'family', m_family, MP .. 'dimension', m_dim,
      MP .. 'fingerprint', m_fp)
  else
    return redis.error_reply('STALE no model recorded')
  end
end
"""

_KEY_CHECK = r"""
for k = 2, #KEYS do
  local key = KEYS[k]
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE key ' .. key .. ' holds a ' .. kind .. ', not an item hash')
  end
end
"""

# The guard and the key check of a whole batch, writing nothing (but a model recorded where none is): run
# before the batch is written in chunks (UPSERT_LUA), so that a batch refused is refused before any write.
# KEYS and ARGV[1..11] as UPSERT_LUA's.
CHECK_LUA = _MODEL_GUARD + _KEY_CHECK + "return 0\n"

# KEYS[1]: the catalog hash (see _MODEL_GUARD); KEYS[2..]: item keys. ARGV[12..]: for each item, its new
# sources (joined), a count N, then N field/value pairs. Checks every key before writing any, so a chunk is
# written whole or not at all. Each write indexes the item, HNSW insertion included, while every other client
# waits: the service sends a batch in small chunks (index.UPSERT_CHUNK) so that searches run between them.
UPSERT_LUA = (
    _LUA_COMMON
    + _MODEL_GUARD
    + _KEY_CHECK
    + r"""
local created, pos = 0, 12
for k = 2, #KEYS do
  local key = KEYS[k]
  local sources, seen = {}, {}
  local existing = redis.call('HGET', key, F_SOURCES)
  if redis.call('EXISTS', key) == 0 then created = created + 1 end
  for _, list in ipairs({split(existing), split(ARGV[pos])}) do
    for _, s in ipairs(list) do
      if not seen[s] then seen[s] = true; sources[#sources + 1] = s end
    end
  end
  local n = tonumber(ARGV[pos + 1])
  local fields = {}
  for j = pos + 2, pos + 1 + 2 * n do fields[#fields + 1] = ARGV[j] end
  pos = pos + 2 + 2 * n
  if #sources > 0 then
    fields[#fields + 1] = F_SOURCES; fields[#fields + 1] = table.concat(sources, SEP)
    local dirs = dirs_of(sources)
    if #dirs > 0 then fields[#fields + 1] = F_DIRS; fields[#fields + 1] = table.concat(dirs, SEP) end
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(fields))  -- one write: the item is indexed once
end
return created
"""
)

# KEYS: item keys. ARGV[4]: the collection field; ARGV[5]: the (encoded) collection an item must be in, or ''
# for any; ARGV[6..]: sources to remove. The collection is checked here, not only in the query that found the
# keys, because an upsert may have moved an item to another collection since. Returns {deleted, updated}.
REMOVE_SOURCES_LUA = (
    _LUA_COMMON
    + r"""
local F_COLLECTION, scope = ARGV[4], ARGV[5]
local remove = {}
for j = 6, #ARGV do remove[ARGV[j]] = true end
local deleted, updated = 0, 0
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash'
      and (scope == '' or redis.call('HGET', key, F_COLLECTION) == scope) then
    local old = split(redis.call('HGET', key, F_SOURCES))
    local kept = {}
    for _, s in ipairs(old) do if not remove[s] then kept[#kept + 1] = s end end
    if #kept < #old then
      if #kept == 0 then
        redis.call('DEL', key); deleted = deleted + 1
      else
        set_sources(key, kept); updated = updated + 1
      end
    end
  end
end
return {deleted, updated}
"""
)
