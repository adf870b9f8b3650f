# SPDX-License-Identifier: MIT OR Apache-2.0
# Turn the commented example configuration (packaging/twostep.toml.example) into the roff
# body of the OPTIONS section of twostep.toml(5):
#   [table]          -> .SS [table]
#   # [services.x]   -> .SS [services.x] (an example table, commented out)
#   ## prose         -> the description of the next key (or of the table, before any key)
#   # key = default  -> .TP / key = default in bold / prose
# Lines before the first table are the file's own header and are skipped.
function esc(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    sub(/^[.']/, "\\\\&&", s)
    return s
}
function flush_prose() {
    if (prose != "") { print prose; prose = "" }
}
/^\[[a-z_]+\]$/ || /^# \[services\.[a-z0-9._+-]+\]$/ {
    flush_prose(); seen_table = 1
    t = $0; sub(/^# /, "", t)
    print ".SS " esc(t)
    next
}
!seen_table { next }
/^## ?/ {
    line = $0; sub(/^## ?/, "", line)
    prose = prose (prose == "" ? "" : "\n") esc(line)
    next
}
/^# [a-z_]+ = / {
    key = $0; sub(/^# /, "", key)
    print ".TP"
    print "\\fB" esc(key) "\\fR"
    flush_prose()
    keys++
    next
}
/^[ \t]*$/ { flush_prose(); next }
{ printf "options.awk: %s:%d: unexpected line: %s\n", FILENAME, FNR, $0 > "/dev/stderr"; bad = 1 }
END {
    flush_prose()
    if (bad || keys == 0) exit 1
}
