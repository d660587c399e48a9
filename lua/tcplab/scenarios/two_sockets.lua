--- The listening socket and the connected socket are two sockets: other fd,
-- other inode, the listener stays LISTEN; a second client makes a third.
local tcplab = require "tcplab.kernel"
local kit = require "tcplab.scenarios.kit"

return {
  title = "two sockets",
  claim = "the listening socket and each connected socket are different sockets",
  run = function(opts)
    local s = kit.begin("two sockets", opts)
    local tl, srv = s.tl, s.srv
    local c1 <close> = kit.connect(s)
    local a1 <close> = assert(srv:accept(2))
    tl:step("server", "accept()", tostring(a1))
    local c2 <close> = assert(tcplab.socket(s.family))
    tl:step("client", "second client: connect()", assert(c2:connect(s.host, s.port, 2)))
    local a2 <close> = assert(srv:accept(2))
    tl:step("server", "accept()", tostring(a2))

    local fds = { srv:fileno(), a1:fileno(), a2:fileno() }
    local inodes = { srv:inode(), a1:inode(), a2:inode() }
    tl:check(fds[1] ~= fds[2] and fds[2] ~= fds[3] and fds[1] ~= fds[3],
             ("three fds: listener %d, first connection %d, second %d"):format(fds[1], fds[2], fds[3]))
    local dump = assert(tcplab.snapshot{ sport = s.port })
    local by_inode = {}
    for _, r in ipairs(dump) do by_inode[r.inode] = r.state end
    tl:check(by_inode[inodes[1]] == "LISTEN", "the dump shows the listener's inode in LISTEN")
    tl:check(by_inode[inodes[2]] == "ESTABLISHED" and by_inode[inodes[3]] == "ESTABLISHED",
             "the dump shows both connected sockets' inodes ESTABLISHED")
    tl:check(#dump == 3, ("three sockets on the server port (%d)"):format(#dump))
    tl:check(srv:state() == "LISTEN", "the listener is still LISTEN")
    for _, sock in ipairs({ c1, c2, a1, a2, srv }) do sock:close() end
    return kit.finish(s, {
      server = { "LISTEN>SYN_RECV>ESTABLISHED", "LISTEN>SYN_RECV>ESTABLISHED" },
    }, { fds = fds, inodes = inodes })
  end,
}
