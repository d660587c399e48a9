--- make mutate: plant each realistic bug listed in spec/mutations/*.lua in a
-- private copy of the tree and require the listed specs to FAIL.
--
-- An entry is { file =, from =, to =, specs = { ... }, why = }: `from` must
-- occur exactly once in `file` (plain text, not a pattern). The runner copies
-- the tree (git ls-files, tracked and untracked-not-ignored, plus build/ and
-- the built module so a C mutant rebuilds one object) to a directory under
-- /tmp, runs the specs of every selected entry there unmutated (they must
-- pass, else a kill means nothing), then for each entry: writes the mutant,
-- runs `make` when the file is not Lua, runs the specs with busted under
-- `timeout`, restores the file. Killed = the specs failed (or timed out);
-- survived = they passed. A mutant that does not build is an error, not a kill.
--
-- Environment: MUTATE=substring picks entries (matched against the list's
-- file name, the entry's file, from and why); MUTATE_TIMEOUT seconds per
-- mutant (default 600); MUTATE_KEEP=1 keeps the copy and its logs.
-- Exit 0 when every selected mutant was killed; 1 when one survived, an
-- entry is malformed, the baseline fails, or a mutant did not build.
--
-- Used as a module (require "mutate") by spec/mutate_spec.lua: M.check_entry,
-- M.load_lists, M.apply.
local M = {}
local modname = ...

local function shq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

--- Occurrences of plain `needle` in `s` (overlapping ones counted).
function M.count(s, needle)
  local n, init = 0, 1
  while true do
    local i = s:find(needle, init, true)
    if not i then return n end
    n, init = n + 1, i + 1
  end
end

--- Why an entry cannot run, or nil when it can. `root` is the tree it
-- applies to.
function M.check_entry(e, root)
  if type(e) ~= "table" then return "an entry must be a table, got " .. type(e) end
  for _, k in ipairs({ "file", "from", "to", "why" }) do
    if type(e[k]) ~= "string" then
      return ("field '%s' must be a string, got %s"):format(k, type(e[k]))
    end
  end
  for k in pairs(e) do
    if k ~= "file" and k ~= "from" and k ~= "to" and k ~= "specs" and k ~= "why" then
      return ("unknown field '%s' (fields: file, from, to, specs, why)"):format(tostring(k))
    end
  end
  if e.from == "" then return "field 'from' is empty" end
  if e.from == e.to then return "'to' equals 'from': nothing is planted" end
  if e.why:match("^%s*$") then return "field 'why' is empty: say what realistic bug this plants" end
  if type(e.specs) ~= "table" or #e.specs == 0 then
    return "field 'specs' must be a non-empty list of spec files"
  end
  if e.file:match("^/") or e.file:match("%.%.") then
    return ("file '%s' must be a path inside the tree"):format(e.file)
  end
  local text = read(root .. "/" .. e.file)
  if not text then return ("file '%s' does not exist"):format(e.file) end
  local n = M.count(text, e.from)
  if n ~= 1 then
    return ("'from' occurs %d times in %s (must be exactly once): %q"):format(n, e.file, e.from)
  end
  for i, s in ipairs(e.specs) do
    if type(s) ~= "string" then return ("specs[%d] must be a string"):format(i) end
    if not read(root .. "/" .. s) then return ("spec '%s' does not exist"):format(s) end
  end
  return nil
end

--- The mutant's text of `file`'s content.
function M.apply(text, e)
  local i, j = text:find(e.from, 1, true)
  return text:sub(1, i - 1) .. e.to .. text:sub(j + 1)
end

--- Every list under root/spec/mutations: entries with .list and .index set,
-- and the problems found (malformed lists or entries), as strings.
function M.load_lists(root)
  local entries, problems = {}, {}
  local p = assert(io.popen("ls " .. shq(root .. "/spec/mutations") .. " 2>/dev/null"))
  local names = {}
  for name in p:lines() do
    if name:match("%.lua$") then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  for _, name in ipairs(names) do
    local path = "spec/mutations/" .. name
    local chunk, err = loadfile(root .. "/" .. path)
    local ok, list = false, err
    if chunk then ok, list = pcall(chunk) end
    if not ok then
      problems[#problems + 1] = ("%s: %s"):format(path, tostring(list))
    elseif type(list) ~= "table" then
      problems[#problems + 1] = ("%s: must return a list of entries, returned %s"):format(path, type(list))
    else
      for i, e in ipairs(list) do
        local why = M.check_entry(e, root)
        if why then
          problems[#problems + 1] = ("%s entry %d: %s"):format(path, i, why)
        else
          e.list, e.index = path, i
          entries[#entries + 1] = e
        end
      end
    end
  end
  return entries, problems
end

local function selected(e, pick)
  if not pick or pick == "" then return true end
  for _, s in ipairs({ e.list, e.file, e.from, e.why, ("%s:%d"):format(e.list, e.index) }) do
    if s:find(pick, 1, true) then return true end
  end
  return false
end

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if how == "signal" then return false, "signal", code end
  return ok == true, how, code
end

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t or os.time()
end

--- Copy the tree at `src` (what git knows of, plus build/ and the module,
-- timestamps kept) to `dst`.
local function copy_tree(src, dst)
  local cmd = ("cd %s && { git ls-files -z --cached --others --exclude-standard; "
    .. "for f in build lua/tcplab/core.so; do [ -e \"$f\" ] && printf '%%s\\0' \"$f\"; done; } "
    .. "| tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xpf - -C %s"):format(shq(src), shq(dst))
  return sh(cmd)
end

local function busted_cmd(root, specs, timeout, log)
  local list = {}
  for i, s in ipairs(specs) do list[i] = shq(s) end
  local env = ("LUA_PATH=%s LUA_CPATH=%s TCPLAB_CPATH=%s TCPLAB_EXPECT_CORE=%s"):format(
    shq(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;;"),
    shq(root .. "/lua/?.so;;"), shq(root .. "/lua/?.so"), shq(root .. "/lua/tcplab/core.so"))
  return ("cd %s && %s timeout -k 10 %d lua5.4 /usr/bin/busted -o utfTerminal %s </dev/null >%s 2>&1")
    :format(shq(root), env, timeout, table.concat(list, " "), shq(log))
end

local function needs_build(file)
  return not file:match("%.lua$") and not file:match("^spec/") and not file:match("^doc/")
end

local function make(root, log)
  return sh(("make -C %s all >>%s 2>&1"):format(shq(root), shq(log)))
end

function M.main()
  local src = assert(io.popen("git rev-parse --show-toplevel 2>/dev/null")):read("l") or "."
  local pick = os.getenv("MUTATE")
  local timeout = tonumber(os.getenv("MUTATE_TIMEOUT") or "") or 600
  local keep = os.getenv("MUTATE_KEEP") == "1"

  local all, problems = M.load_lists(src)
  for _, p in ipairs(problems) do print("MALFORMED " .. p) end
  local entries = {}
  for _, e in ipairs(all) do
    if selected(e, pick) then entries[#entries + 1] = e end
  end
  if #entries == 0 then
    print(("no mutation entries%s"):format(pick and (" match MUTATE=" .. pick) or ""))
    -- a pick that matches nothing is a typo, not a pass
    return (#problems == 0 and not (pick and pick ~= "")) and 0 or 1
  end

  local tmp = assert(io.popen("mktemp -d /tmp/tcplab-mutate.XXXXXX")):read("l")
  assert(tmp and tmp:match("^/tmp/tcplab%-mutate%."), "mktemp failed")
  local root = tmp .. "/tree"
  -- readable by all: some specs run the tree as an unprivileged user
  assert(sh(("chmod 755 %s && mkdir %s"):format(shq(tmp), shq(root))))
  local status = 1
  local ok, err = pcall(function()
    assert(copy_tree(src, root), "copying the tree to " .. root .. " failed")
    local blog = tmp .. "/build.log"
    if not make(root, blog) then error("the unmutated copy does not build: see " .. blog) end

    -- Baseline: each spec file used by a selected entry passes unmutated.
    local seen, specs = {}, {}
    for _, e in ipairs(entries) do
      for _, s in ipairs(e.specs) do
        if not seen[s] then seen[s] = true; specs[#specs + 1] = s end
      end
    end
    table.sort(specs)
    local bad, failing = 0, {}
    for _, s in ipairs(specs) do
      local log = ("%s/baseline-%s.log"):format(tmp, s:gsub("[/%.]", "_"))
      local t0 = now()
      local passed, how, tries = false, nil, 0
      repeat   -- a second try: a spec that fails once on a busy host is not a broken baseline
        tries = tries + 1
        passed, how = sh(busted_cmd(root, { s }, timeout, log))
        if how == "signal" then error("interrupted", 0) end
      until passed or tries == 2
      print(("baseline %-40s %s (%.1f s%s)"):format(s, passed and "passes" or "FAILS", now() - t0,
        tries > 1 and ", 2 tries" or ""))
      if not passed then bad, failing[s] = bad + 1, true; print("  log: " .. log); keep = true end
    end

    local killed, survived, broken = 0, 0, 0
    for n, e in ipairs(entries) do
      local unjudged
      for _, s in ipairs(e.specs) do unjudged = unjudged or (failing[s] and s) end
      if unjudged then
        print(("%-16s %6.1f s  %s:%d  %s: %s"):format("NOT JUDGED", 0, e.list, e.index, e.file,
          (e.why:gsub("%s+", " "))))
        print("  " .. unjudged .. " fails on the unmutated tree: a kill would mean nothing")
        goto next
      end
      do
      local path = root .. "/" .. e.file
      local orig = assert(read(path))
      local log = ("%s/mutant-%d.log"):format(tmp, n)
      local t0 = now()
      write(path, M.apply(orig, e))
      local verdict
      if needs_build(e.file) and not make(root, log) then
        verdict, broken = "DOES NOT BUILD", broken + 1
      else
        local passed, how, code = sh(busted_cmd(root, e.specs, timeout, log))
        if how == "signal" then error("interrupted", 0) end
        if passed then
          verdict, survived = "SURVIVED", survived + 1
        else
          verdict, killed = (code == 124 or code == 137) and "killed (timeout)" or "killed", killed + 1
        end
      end
      write(path, orig)
      if needs_build(e.file) then make(root, log) end
      print(("%-16s %6.1f s  %s:%d  %s: %s"):format(verdict, now() - t0, e.list, e.index, e.file,
        (e.why:gsub("%s+", " "))))
      if verdict == "killed" then
        -- which spec killed it: busted's first "Failure → file @ line" / "Error → ..."
        local text = read(log) or ""
        local by = text:match("\n(Failure → [^\n]*)") or text:match("\n(Error → [^\n]*)")
        if by then print("  by " .. by) end
      elseif verdict ~= "killed (timeout)" then
        print("  log: " .. log); keep = true
      end
      end
      ::next::
    end
    print(("%d killed, %d survived%s%s%s"):format(killed, survived,
      broken > 0 and (", " .. broken .. " did not build") or "",
      bad > 0 and (", " .. bad .. " spec file(s) failing unmutated (their mutants not judged)") or "",
      #problems > 0 and (", " .. #problems .. " malformed") or ""))
    if survived == 0 and broken == 0 and bad == 0 and #problems == 0 then status = 0 end
  end)
  if not ok then print("mutate: " .. tostring(err)); status = err == "interrupted" and 130 or 1 end
  if keep then
    print("kept " .. tmp)
  else
    sh("rm -rf " .. shq(tmp))
  end
  return status
end

if modname == nil then
  os.exit(M.main())
end
return M
