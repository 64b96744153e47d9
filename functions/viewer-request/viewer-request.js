import cf from 'cloudfront';
// Thumbnail format by Accept, nearest regional stack (docs/edge.md). Verbatim in
// template-edge.yaml's Fn::Sub: no template literals.
const THUMBNAIL_PREFIX = '/${ThumbnailPrefix}';
const FORMATS = ',${ThumbnailFormats},';
const REGIONAL_ORIGINS = '${RegionalOrigins}';
const VIEWER_ROUTES = '${ViewerRoutes}';
const OFFLINE_REGIONS = ',${OfflineRegions},';
// Regions' locations (name: lat,lon of name-1, name-2...); capitals (scripts/country-points:
// CClat,lon, the first letter left out when it repeats).
const REGION_POINTS = 'us-east:39,-77,40,-83;us-west:37,-122,46,-120;ca-central:46,-74;ca-west:51,-114;mx-central:21,-100;sa-east:-24,-47;eu-west:53,-6,52,0,49,2;eu-central:50,9,47,9;eu-south:45,9,41,-1;eu-north:59,18;il-central:32,35;me-south:26,51;me-central:24,54;af-south:-34,18;ap-south:19,73,17,78;ap-east:22,114,25,121;ap-northeast:36,140,38,127,35,136;ap-southeast:1,104,-34,151,-6,107,-38,145,3,102,-37,175,14,101';
const COUNTRY_POINTS = 'AD43,2E24,54F35,69G17,-62I18,-63L41,20M40,45O-9,13R-35,-58S-14,-171T48,16U-35,149W13,-70X60,20Z40,50BA44,18B13,-60D24,90E51,4F12,-2G43,23H26,51I-3,30J6,3L18,-63M32,-65N5,115O-19,-65Q12,-68R-16,-48S25,-77T27,90W-25,26Y54,28Z17,-89CA45,-76C-12,97D-4,15F4,19G-4,15H47,7I7,-5K-21,-160L-33,-71M4,12N40,116O5,-74R10,-84U23,-82V15,-24W12,-69X-10,106Y35,33Z50,14DE53,13J12,43K56,13M15,-61O18,-70Z37,3EC0,-79E59,25G30,31H27,-13R15,39S40,-4T9,39FI60,25J-18,178K-52,-58M7,158O62,-7R49,2GA0,9B52,0D12,-62E42,45F5,-52G49,-3H6,0I36,-5L64,-52M13,-17N10,-14P16,-62Q2,11R38,24S-54,-37T15,-91U13,145W12,-16Y7,-58HK22,114N14,-87R46,16T19,-72U47,19ID-6,107E53,-6L32,35M54,-4N29,77O-7,72Q33,44R36,51S64,-22T42,13JE49,-2M18,-77O32,36P36,140KE-1,37G43,75H12,105I1,173M-12,43N17,-63P39,126R38,127W29,48Y19,-81Z51,71LA18,103B34,36C14,-61I47,10K7,80R6,-11S-29,27T55,25U50,6V57,24Y33,13MA34,-7C44,7D47,29E42,19F18,-63G-19,48H7,171K42,21L13,-8M20,96N48,107O22,114P15,146Q15,-61R18,-16S17,-62T36,15U-20,57V4,74W-14,34X19,-99Y3,102Z-26,33NA-23,17C-22,166E14,2F-29,168G9,7I12,-86L52,5O60,11P28,85R-1,167U-19,-170Z-41,175OM24,58PA9,-80E-12,-77F-18,-150G-9,147H15,121K34,73L52,21M47,-56N-25,-130R18,-66S32,35T39,-9W7,134Y-25,-58QA25,52RE-21,55O44,26S45,20U56,38W-2,30SA25,47B-9,160C-5,55D16,33E59,18G1,104H-16,-6I46,15J78,16K48,17L8,-13M44,12N15,-17O2,45R6,-55S5,32T0,7V14,-89X18,-63Y34,36Z-26,31TC21,-71D12,15F-49,70G6,1H14,101J39,69K-9,-172L-9,126M38,58N37,10O-21,-175R40,33T11,-62V-9,179W25,122Z-6,36UA50,31G0,33S39,-77Y-35,-56Z41,69VA42,12C13,-61E10,-67G18,-65I18,-65N21,106U-18,168WF-13,-176S-14,-172XK43,21YE15,44T-13,45ZA-26,28M-15,28W-18,31';

// [sin, cos of lat, lon] in radians
function point(lat, lon) {
  const radian = Math.PI / 180;
  return [Math.sin(lat * radian), Math.cos(lat * radian), lon * radian];
}

// 'a=b,c=d' -> { a: 'b', c: 'd' }
function pairs(text, separator) {
  const found = Object.create(null);
  const items = text.split(',');
  for (let i = 0; i < items.length; i++) {
    const at = items[i].indexOf(separator);
    if (at > 0) found[items[i].slice(0, at).trim()] = items[i].slice(at + 1).trim();
  }
  return found;
}

// A scan that stops at the entry: a request needs one country.
function countryPoint(country) {
  const entry = /([A-Z]?)([A-Z])(-?[0-9]+),(-?[0-9]+)/g;
  let letter = '';
  let m;
  while ((m = entry.exec(COUNTRY_POINTS)) !== null) {
    letter = m[1] || letter;
    if (letter + m[2] === country) return point(m[3], m[4]);
  }
  return null;
}

function regionPoint(region) {
  const groups = REGION_POINTS.split(';');
  for (let i = 0; i < groups.length; i++) {
    const parts = groups[i].split(/[:,]/);
    const n = region.indexOf(parts[0] + '-') === 0 ? Number(region.slice(parts[0].length + 1)) : 0;
    if (n > 0 && 2 * n < parts.length) return point(parts[2 * n - 1], parts[2 * n]);
  }
  return null;
}

const SLOTS = pairs(REGIONAL_ORIGINS, ':');
const ROUTES = pairs(VIEWER_ROUTES, '=');
// Slot 1's origins: overseas-bucket, domestic; slot N's: bucket-N, domestic-N.
const STACKS = [];
for (let slot = 1; slot <= 4; slot++) {
  if (SLOTS[slot]) STACKS.push({ slot: slot, region: SLOTS[slot] });
}

function online(stack) {
  return OFFLINE_REGIONS.indexOf(',' + stack.region + ',') < 0;
}

// Largest cosine of the great-circle angle; an unknown country's: the first slot.
function nearest(country, onlineOnly) {
  const from = countryPoint(country);
  let best = null;
  let bestCos = -3;
  for (let i = 0; i < STACKS.length; i++) {
    const to = regionPoint(STACKS[i].region);
    if (onlineOnly && !online(STACKS[i])) continue;
    const cos = from && to ? from[0] * to[0] + from[1] * to[1] * Math.cos(from[2] - to[2]) : -2;
    if (cos > bestCos) {
      best = STACKS[i];
      bestCos = cos;
    }
  }
  return best;
}

// Its country's route, else the nearest; null: the domestic origin.
function target(country) {
  const routed = ROUTES[country];
  if (routed === undefined) return nearest(country, false);
  for (let i = 0; i < STACKS.length; i++) {
    if (STACKS[i].region === routed) return STACKS[i];
  }
  return null;
}

// "Helper methods for origin modification"; no call: slot 1.
function route(request, thumbnail) {
  if (STACKS.length < 2) return;
  const header = request.headers['cloudfront-viewer-country'];
  const country = header ? header.value : '';
  let stack = target(country);
  if (stack !== null && !online(stack)) stack = null;
  if (thumbnail) {
    // Thumbnails are in buckets only.
    if (stack === null) stack = nearest(country, true);
    if (stack !== null && stack.slot > 1) cf.selectRequestOriginById('bucket-' + stack.slot);
  } else if (stack === null) {
    cf.selectRequestOriginById('domestic-direct');
  } else if (stack.slot > 1) {
    cf.createRequestOriginGroup({
      originIds: ['bucket-' + stack.slot, 'domestic-' + stack.slot],
      failoverCriteria: { statusCodes: [403, 404, 500, 502, 503, 504] }
    });
  }
}

function handler(event) {
  const request = event.request;
  try {
    const thumbnail = request.uri.indexOf(THUMBNAIL_PREFIX) === 0;
    const uri = thumbnail ? negotiated(request) : request.uri;
    route(request, thumbnail);
    request.uri = uri;
  } catch (e) {
    // The behaviour's own origin serves instead.
  }
  return request;
}

const AVIF = FORMATS.indexOf(',avif,') >= 0;
const WEBP = FORMATS.indexOf(',webp,') >= 0;

// AVIF for stills only; an animated source's GIF has an animated WebP.
const STILL = [];
if (AVIF) STILL.push('avif');
if (WEBP) STILL.push('webp');
const PRIMARIES = {
  jpg: { type: 'image/jpeg', alternatives: STILL },
  png: { type: 'image/png', alternatives: STILL },
  gif: { type: 'image/gif', alternatives: WEBP ? ['webp'] : [] }
};

const WIDTH = /^[0-9]{1,5}$/;
// RFC 9110, 12.4.2: a weight is 0 to 1 with at most three decimals.
const QVALUE = /^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$/;

// {prefix}{key}/{width}.jpg|png|gif -> the AVIF or WebP beside it the viewer accepts.
function negotiated(request) {
  const uri = request.uri;
  const slash = uri.lastIndexOf('/');
  const dot = uri.lastIndexOf('.');
  if (slash <= THUMBNAIL_PREFIX.length || dot <= slash) return uri;
  if (!WIDTH.test(uri.slice(slash + 1, dot))) return uri;
  const extension = uri.slice(dot + 1);
  if (!Object.prototype.hasOwnProperty.call(PRIMARIES, extension)) return uri;
  const primary = PRIMARIES[extension];
  if (primary.alternatives.length === 0) return uri;
  const chosen = choose(primary, acceptWeights(request.headers.accept));
  return chosen === null ? uri : uri.slice(0, dot + 1) + chosen;
}

// { range: q } from Accept (multiValue: several lines); a repeated range's lower weight; an
// invalid weight is 0.
function acceptWeights(header) {
  const weights = Object.create(null);
  if (!header) return weights;
  const text = header.multiValue ? header.multiValue.map((line) => line.value).join(',') : header.value || '';
  const ranges = text.split(',');
  for (let i = 0; i < ranges.length; i++) {
    const parts = ranges[i].split(';');
    const range = parts[0].trim().toLowerCase();
    if (range === '') continue;
    let q = 1;
    for (let j = 1; j < parts.length; j++) {
      const parameter = parts[j].trim();
      const equals = parameter.indexOf('=');
      if (equals > 0 && parameter.slice(0, equals).trim().toLowerCase() === 'q') {
        const value = parameter.slice(equals + 1).trim();
        q = QVALUE.test(value) ? Number(value) : 0;
        break;
      }
    }
    if (!(range in weights) || q < weights[range]) weights[range] = q;
  }
  return weights;
}

// Null: the primary. Only a format's own type counts (all browsers send image/*); a tie goes to
// the smaller file; a higher weight on the primary's type or wildcard keeps it.
function choose(primary, weights) {
  let best = null;
  let bestWeight = 0;
  for (let i = 0; i < primary.alternatives.length; i++) {
    const weight = weights['image/' + primary.alternatives[i]];
    if (weight !== undefined && weight > bestWeight) {
      best = primary.alternatives[i];
      bestWeight = weight;
    }
  }
  if (best === null) return null;
  let own = weights[primary.type];
  if (own === undefined) own = weights['image/*'];
  if (own === undefined) own = weights['*/*'];
  return own !== undefined && own > bestWeight ? null : best;
}
