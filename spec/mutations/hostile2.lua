-- Planted bugs that spec/hostile2_spec.lua must catch (make mutate).
return {
  {
    file = "csrc/textfile.c",
    from = "if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {",
    to = "if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {",
    specs = { "spec/hostile2_spec.lua" },
    why = "only directories refused: --pcap /dev/null renames a regular file over the host's device node",
  },
}
