-- Orthanc as the PACS of the laptop stack (deploy/compose.yaml): every CT
-- series that has been stable for StableAge seconds (no new instance) is sent
-- by C-STORE to the modality LIVERSEG (DicomModalities in orthanc.json).
-- What liverseg sends back (SEG, Encapsulated STL, SR) is not CT, so it is
-- never routed again.

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'CT' then
    return
  end
  local series = ParseJson(RestApiGet('/series/' .. seriesId))
  if series == nil or series['Instances'] == nil then
    print('route-to-liverseg: series ' .. seriesId .. ' vanished before routing')
    return
  end
  print('route-to-liverseg: sending CT series ' .. seriesId .. ' (' ..
        #series['Instances'] .. ' instances) to LIVERSEG')
  -- SendToModality takes an instance, not a series: one store operation per
  -- instance, all in the one Lua job Orthanc submits when this callback
  -- returns, sharing one association to LIVERSEG.
  for _, instanceId in ipairs(series['Instances']) do
    SendToModality(instanceId, 'LIVERSEG')
  end
end
