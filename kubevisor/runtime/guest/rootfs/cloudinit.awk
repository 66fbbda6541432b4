# Turn the flattened seed (yaml.awk's "path=value" lines) into a shell
# script for the test guest's /init. mode=user: hostname, write_files and
# ssh keys from cloud-config user-data; mode=runcmd: the runcmd entries;
# mode=net: one "net_iface MAC NAME DHCP4 ADDRESS GATEWAY" call per
# network-config v2 ethernet. busybox awk.

function unesc(s,   out, i, c) {
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\") { i++; c = substr(s, i, 1); out = out (c == "n" ? "\n" : c) } else out = out c
  }
  return out
}
function q(s) { gsub(/'/, "'\\''", s); return "'" s "'" }
{
  eq = index($0, "="); if (eq == 0) next
  path = substr($0, 1, eq - 1); v = unesc(substr($0, eq + 1)); n = split(path, k, ".")
}
mode == "user" && (path == "hostname" || path == "fqdn") { host[path] = v }
mode == "user" && k[1] == "write_files" && n == 3 { wf[k[2], k[3]] = v; if (k[2] + 1 > nwf) nwf = k[2] + 1 }
mode == "user" && path ~ /(^|\.)ssh_authorized_keys\.[0-9]+$/ { keys[nkeys++] = v }
mode == "runcmd" && k[1] == "runcmd" {
  if (n == 2) { cmd[k[2]] = v; if (k[2] + 1 > ncmd) ncmd = k[2] + 1 }
  else if (n == 3) { cmd[k[2]] = cmd[k[2]] (cmd[k[2]] == "" ? "" : " ") q(v); if (k[2] + 1 > ncmd) ncmd = k[2] + 1 }
}
mode == "net" && k[1] == "ethernets" && n >= 3 {
  id = k[2]; if (!(id in seen)) { seen[id] = 1; ids[nids++] = id }
  rest = substr(path, length("ethernets." id ".") + 1)
  if (rest == "match.macaddress") mac[id] = v
  else if (rest == "set-name") name[id] = v
  else if (rest == "dhcp4") dhcp[id] = v
  else if (rest ~ /^addresses\.[0-9]+$/ && v ~ /\./ && !(id in addr)) addr[id] = v
  else if (rest == "gateway4") gw[id] = v
  else if (rest ~ /^routes\.[0-9]+\.to$/) { split(rest, r, "."); rto[id, r[2]] = v }
  else if (rest ~ /^routes\.[0-9]+\.via$/) { split(rest, r, "."); rvia[id, r[2]] = v }
}
END {
  if (mode == "user") {
    if ("hostname" in host) print "set_hostname " q(host["hostname"])
    else if ("fqdn" in host) print "set_hostname " q(host["fqdn"])
    for (i = 0; i < nwf; i++) {
      p = wf[i, "path"]; if (p == "") continue
      print "mkdir -p \"$(dirname " q(p) ")\""
      redir = (wf[i, "append"] == "true") ? ">>" : ">"
      if (wf[i, "encoding"] ~ /^(b64|base64)$/) print "printf %s " q(wf[i, "content"]) " | base64 -d " redir " " q(p)
      else print "printf %s " q(wf[i, "content"]) " " redir " " q(p)
      if (wf[i, "permissions"] != "") print "chmod " q(wf[i, "permissions"]) " " q(p)
    }
    if (nkeys) print "mkdir -p /root/.ssh && chmod 700 /root/.ssh"
    for (i = 0; i < nkeys; i++) print "echo " q(keys[i]) " >> /root/.ssh/authorized_keys"
    if (nkeys) print "chmod 600 /root/.ssh/authorized_keys"
  }
  if (mode == "runcmd") for (i = 0; i < ncmd; i++) if (i in cmd) print cmd[i]
  if (mode == "net") for (j = 0; j < nids; j++) {
    id = ids[j]; g = gw[id]
    for (x in rvia) { split(x, r, SUBSEP); if (r[1] == id && rto[id, r[2]] ~ /^(default|0\.0\.0\.0\/0)$/) g = rvia[x] }
    print "net_iface " q(mac[id]) " " q(name[id] != "" ? name[id] : id) " " q(dhcp[id]) " " q(addr[id]) " " q(g)
  }
}
