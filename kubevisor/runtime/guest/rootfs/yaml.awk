# Flatten the block-YAML subset cloud-init seeds use into "path=value"
# lines (path: keys and list indexes joined by "."; value with "\" as "\\"
# and newlines as "\n"). Understands mappings, sequences (also "- " at the
# parent key's indent), block scalars (| |- > >-), flow sequences [a, b]
# and quoted scalars. Run by the test guest's /init on meta-data,
# user-data and network-config; busybox awk.

function esc(s) { gsub(/\\/, "\\\\", s); gsub(/\n/, "\\n", s); return s }
function emit(path, value) { print path "=" esc(value) }
function dquoted(s,   out, i, c) {   # the body of a "..." scalar: \n \t \" \\ escapes
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\") { i++; c = substr(s, i, 1); out = out (c == "n" ? "\n" : c == "t" ? "\t" : c) }
    else out = out c
  }
  return out
}
function scalar(s,   q) {
  sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s)
  q = substr(s, 1, 1)
  if (q == "\"" && substr(s, length(s), 1) == "\"") {
    return dquoted(substr(s, 2, length(s) - 2))
  }
  if (q == "'" && substr(s, length(s), 1) == "'") {
    s = substr(s, 2, length(s) - 2); gsub(/''/, "'", s); return s
  }
  sub(/[ \t]+#.*$/, "", s)
  return s
}
function flow(path, s,   n, i, c, item, quote) {   # "[a, 'b, c', d]"
  s = substr(s, 2, length(s) - 2); n = 0; item = ""; quote = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (quote != "") { if (c == quote) quote = ""; item = item c; continue }
    if (c == "\"" || c == "'") { quote = c; item = item c; continue }
    if (c == ",") { emit(path "." n++, scalar(item)); item = ""; continue }
    item = item c
  }
  if (item ~ /[^ \t]/) emit(path "." n++, scalar(item))
}
# value of "key: value" at (path): scalar, flow list, block start or container
function keyline(i, c,   key, rest, p) {
  key = c; sub(/:.*$/, "", key); key = scalar(key)
  rest = c; sub(/^[^:]*:/, "", rest); sub(/^[ \t]+/, "", rest); sub(/[ \t\r]+$/, "", rest)
  p = pfx[d] key
  if (rest == "" || rest ~ /^#/) { d++; pfx[d] = p "."; keyind[d] = i; ind[d] = -1; cnt[d] = 0; return }
  if (rest ~ /^[|>][-+]?$/) { blk = 1; bpath = p; bparent = i; bind = -1; bval = ""
    bchomp = (rest ~ /-$/) ? "strip" : "clip"; bfold = (rest ~ /^>/); return }
  if (rest ~ /^\[.*\]$/) { flow(p, rest); return }
  emit(p, scalar(rest))
}
function endblock() {
  if (bchomp == "strip") sub(/\n+$/, "", bval); else { sub(/\n+$/, "", bval); bval = bval "\n" }
  if (bfold) gsub(/\n/, " ", bval)
  emit(bpath, bval); blk = 0
}
BEGIN { d = 0; pfx[0] = ""; ind[0] = 0; keyind[0] = -1; blk = 0 }
{
  line = $0; sub(/\r$/, "", line)
  if (blk) {
    if (line ~ /^[ \t]*$/) { bval = bval "\n"; next }
    match(line, /^ */); i = RLENGTH
    if (i > bparent) { if (bind < 0) bind = i; bval = bval substr(line, bind + 1) "\n"; next }
    endblock()
  }
  if (line ~ /^[ \t]*$/ || line ~ /^[ \t]*#/ || line ~ /^(---|\.\.\.)/) next
  match(line, /^ */); i = RLENGTH; c = substr(line, i + 1)
  dash = (c ~ /^-( |$)/)
  while (d > 0) {
    if (ind[d] < 0) { if (i > keyind[d] || (i == keyind[d] && dash)) break }
    else if (i > ind[d] || (i == ind[d] && (dash || i != keyind[d]))) break
    d--
  }
  if (ind[d] < 0) ind[d] = i
  while (dash) {                        # "- x", "- key: v", "- - x"
    n = cnt[d]++; p = pfx[d] n
    c = substr(c, 2); match(c, /^ */); i = i + 1 + RLENGTH; c = substr(c, RLENGTH + 1)
    dash = (c ~ /^-( |$)/)
    if (dash || c ~ /^[^"'\[{][^:]*:( |$)/ || c ~ /^["'][^"']*["']:( |$)/) {
      d++; pfx[d] = p "."; ind[d] = i; keyind[d] = i - 1; cnt[d] = 0
      if (!dash) { keyline(i, c); next }
      continue
    }
    if (c ~ /^\[.*\]$/) flow(p, c); else emit(p, scalar(c))
    next
  }
  if (c ~ /^[^:]+:( |$)/ || c ~ /^[^:]+:$/) keyline(i, c)
}
END { if (blk) endblock() }
