local support = require "support"

local ROCKSPEC = "rockspec/tcplab-scm-1.rockspec"

describe("the rockspec #build", function()
  it("lists every Lua module and C source of the tree", function()
    local text = assert(io.open(ROCKSPEC)):read("a")
    for _, path in ipairs(support.lines("find lua -name '*.lua'; ls csrc/*.c")) do
      assert.truthy(text:find('"' .. path .. '"', 1, true), path .. " missing from " .. ROCKSPEC)
    end
  end)

  it("builds with luarocks make offline and the tree's module loads", function()
    if os.execute("command -v luarocks >/dev/null") ~= true then
      pending("luarocks is not installed")
      return
    end
    local tmp = support.slurp("mktemp -d"):gsub("%s+$", "")
    local ok = os.execute(("cp -r csrc lua bin rockspec %s/ && rm -f %s/lua/tcplab/core.so && cd %s && " ..
      "luarocks --lua-version 5.4 make --deps-mode none %s --tree %s/tree >%s/log 2>&1"):format(tmp, tmp, tmp, ROCKSPEC, tmp, tmp))
    local log = support.slurp("cat " .. tmp .. "/log")
    -- the tree's modules, then the system's (argparse comes from Debian's lua-argparse)
    local env = ("cd /tmp && LUA_PATH='%s/tree/share/lua/5.4/?.lua;%s/tree/share/lua/5.4/?/init.lua;;' " ..
                 "LUA_CPATH='%s/tree/lib/lua/5.4/?.so' "):format(tmp, tmp, tmp)
    local where = support.slurp(env .. [[lua5.4 -e 'local t = require "tcplab"
      io.write(package.searchpath("tcplab.core", package.cpath), " ", type(t.counts()))']])
    local stat = support.slurp(env .. tmp .. "/tree/bin/tcplab stat --style ss; echo rc=$?")
    os.execute("rm -rf " .. tmp)
    assert.is_true(ok, log)
    assert.equal(tmp .. "/tree/lib/lua/5.4/tcplab/core.so table", where)
    assert.matches("rc=0\n$", stat)
  end)

  it("make rock packs a source rock with the C sources that installs offline into a fresh tree and runs", function()
    if os.execute("command -v luarocks >/dev/null") ~= true then
      pending("luarocks is not installed")
      return
    end
    -- in a copy of the tree, so nothing is written into the checkout
    local tmp = support.slurp("mktemp -d"):gsub("%s+$", "")
    local ok = os.execute(("cp -r csrc lua bin rockspec doc Makefile %s/ && rm -f %s/lua/tcplab/core.so && " ..
      "make -s -C %s rock >%s/log 2>&1"):format(tmp, tmp, tmp, tmp))
    local listing = support.slurp(("cd %s && mkdir x && cd x && unzip -q ../tcplab-scm-1.src.rock && " ..
      "tar tzf tcplab-scm.tar.gz; ls"):format(tmp))
    local installed = os.execute(("luarocks --lua-version 5.4 install --deps-mode none --tree %s/tree " ..
      "%s/tcplab-scm-1.src.rock >>%s/log 2>&1"):format(tmp, tmp, tmp))
    local log = support.slurp("cat " .. tmp .. "/log")
    local stat = support.slurp(("cd / && env -u LUA_PATH -u LUA_CPATH %s/tree/bin/tcplab stat --style ss; echo rc=$?"):format(tmp))
    local so = io.open(tmp .. "/tree/lib/lua/5.4/tcplab/core.so")
    if so then so:close() end
    -- luarocks copies the rock's doc/ into the rock's directory (luarocks doc tcplab)
    local man = support.slurp(("find %s/tree/lib/luarocks -path '*/tcplab/scm-1/doc/tcplab.1'"):format(tmp))
    os.execute("rm -rf " .. tmp)
    assert.is_true(ok, log)
    assert.truthy(listing:find("tcplab/csrc/diag_parse.c", 1, true), listing)
    assert.truthy(listing:find("tcplab/lua/tcplab/format/json.lua", 1, true), listing)
    assert.truthy(listing:find("tcplab-scm-1.rockspec", 1, true), listing)
    assert.is_true(installed, log)
    assert.truthy(so, "the install built tcplab/core.so")
    assert.matches("rc=0\n$", stat)
    assert.matches("/doc/tcplab%.1\n$", man, "the rock carries the man page")
  end)

  it("make install PREFIX=... gives a tcplab command that runs from anywhere", function()
    local tmp = support.slurp("mktemp -d"):gsub("%s+$", "")
    -- with the build's own BPF setting, so the module under test is not rebuilt
    local off = io.open("build/bpf-off.stamp")
    local bpf = off and " BPF=0" or ""
    if off then off:close() end
    local ok = os.execute(("make -s install PREFIX=%s%s >%s/log 2>&1"):format(tmp, bpf, tmp))
    local out = support.slurp(("cd / && env -u LUA_PATH -u LUA_CPATH %s/bin/tcplab stat --style ss; echo rc=$?"):format(tmp))
    local n = tonumber(support.slurp(("find %s/share/lua/5.4/tcplab -name '*.lua' | wc -l"):format(tmp)))
    local m = tonumber(support.slurp("find lua/tcplab -name '*.lua' | wc -l"))
    -- man finds the installed page through MANPATH
    local man = support.slurp(("MANPATH=%s/share/man man -w tcplab 2>&1"):format(tmp))
    os.execute("rm -rf " .. tmp)
    assert.is_true(ok)
    assert.matches("rc=0\n$", out)
    assert.equal(m, n)
    assert.equal(tmp .. "/share/man/man1/tcplab.1\n", man)
  end)
end)
