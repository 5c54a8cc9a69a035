"""Run a health.lua the way Argo CD runs a resource customization's health script.

Argo CD (util/lua/lua.go) gives a custom health script a gopher-lua state opened with
`SkipOpenLibs` unless the customization sets `useOpenLibs`: only the base library, `package`,
`table` and its own safe `os` (`time` and `date`, and only through `require("os")`: its
`OpenSafeOs` registers them under the `table` name, so there is no global `os`). No
`string`, no `math`: `string.format(...)` or `("x"):upper()` fail there. It puts the object
in the global `obj` and runs the script with a one-second deadline.

This reproduces that library set in Lua 5.1 (gopher-lua implements 5.1) with lupa, so a
script that leans on a library Argo CD does not give fails here as it would there.
"""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lupa

# gopher-lua's base library (baselib.go), which OpenBase registers as globals.
BASE = [
    "assert",
    "collectgarbage",
    "dofile",
    "error",
    "getfenv",
    "getmetatable",
    "ipairs",
    "load",
    "loadfile",
    "loadstring",
    "module",
    "newproxy",
    "next",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setfenv",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
]

# Builds the sandbox inside Lua: the script gets its own environment holding only the above.
SANDBOX = """
function(names, obj, source)
  local env = {obj = obj}
  for _, name in ipairs(names) do env[name] = _G[name] end
  env._G = env
  local safe_os = {time = os.time, date = os.date}
  env.table = {concat = table.concat, getn = table.getn, insert = table.insert,
               maxn = table.maxn, remove = table.remove, sort = table.sort,
               time = os.time, date = os.date}
  env.package = {preload = {os = function() return safe_os end}, loaded = {}}
  env.require = function(name)
    if name == "os" then return safe_os end
    error("module " .. tostring(name) .. " not found")
  end
  debug.setmetatable("", nil)  -- no string library behind string values either
  local chunk = assert(loadstring(source, "=health.lua"))
  setfenv(chunk, env)
  return chunk()
end
"""

# What Argo CD accepts as a health status (anything else becomes Unknown).
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


class ArgoLuaError(Exception):
    """The script failed where Argo CD would report the resource's health as an error."""


def argocd_health(source: str, obj: dict[str, Any]) -> dict[str, str]:
    """The table `source` returns for `obj`, under Argo CD's library set."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    run = lua.eval(SANDBOX)
    try:
        result = run(lua.table_from(BASE), lua.table_from(obj, recursive=True), source)
    except lupa.LuaError as err:
        raise ArgoLuaError(str(err).splitlines()[0]) from err
    if lupa.lua_type(result) != "table":
        raise ArgoLuaError(f"expect table output from Lua script, not {lupa.lua_type(result)}")
    health = {str(k): str(v) for k, v in result.items()}
    if health.get("status") not in HEALTH_STATUSES:
        return {"status": "Unknown", "message": "Lua returned an invalid health status"}
    return health
