-- Argo CD health check for qmo.dev/QuantizedModel (resource.customizations.health.qmo.dev_QuantizedModel).
-- Maps the operator's conditions to Healthy / Progressing / Degraded. Lua 5.1, as Argo CD runs it.
-- Source of truth: deploy/argocd/health.lua in the qmo repository (tests/unit/test_argocd_health.py).
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions

-- Failures first: a model that is building one variant while another failed is Degraded.
local degraded = condition(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

-- A rollback keeps the last good revision serving, but what Git asks for is not running:
-- Degraded, like an aborted Argo Rollout, so that the change's author is told.
local rolledBack = condition(conditions, "RolledBack")
if rolledBack ~= nil and rolledBack.status == "True" then
  hs.status = "Degraded"
  hs.message = "Rolled back: " .. describe(rolledBack, "the new revision failed its quality gate")
  return hs
end

local gate = condition(conditions, "QualityGate")
if gate ~= nil and gate.status == "False" and gate.reason == "Regressed" then
  hs.status = "Degraded"
  hs.message = describe(gate, "Quality regressed beyond the allowed threshold")
  return hs
end

local building = condition(conditions, "Building")
if building ~= nil and building.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(building, "Building")
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "Ready reflects an older generation"
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready, "Not ready yet")
else
  hs.message = "Not ready yet"
end
return hs
