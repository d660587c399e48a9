#!/usr/bin/perl
# A pre-fork server whose worker leaks: the started process (the master)
# listens and forks one worker; the worker accepts, echoes, and on EOF keeps
# the socket (CLOSE_WAIT held by a process that is not the one started).
#   perl spec/servers/prefork_leak.pl PORT
# Perl (perl-base, always on Debian): tcplab's own sockets are close-on-exec
# and Lua has no fork, so a Lua server cannot hand its listener to a worker.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;

my $port = shift // die "usage: $0 PORT\n";
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1)
  or die "listen on 127.0.0.1:$port: $!\n";
$| = 1;
print "master $$ listening on 127.0.0.1:$port\n";
my $worker = fork() // die "fork: $!\n";
if ($worker == 0) {
  my $sel = IO::Select->new($srv);
  my @kept;
  while (1) {
    for my $fh ($sel->can_read) {
      if ($fh == $srv) {
        my $c = $srv->accept or next;
        $sel->add($c);
        next;
      }
      my $n = sysread($fh, my $buf, 65536);
      if (!defined $n) { $sel->remove($fh); close $fh; next }   # a reset
      if ($n == 0) { $sel->remove($fh); push @kept, $fh; next } # EOF: the leak
      syswrite($fh, $buf);
    }
  }
}
print "worker $worker\n";
waitpid($worker, 0);
