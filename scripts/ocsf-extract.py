#!/usr/bin/env python3
"""Extract from the compiled OCSF schema what tests/ocsf_valid.rs validates against: the event
classes authtrail writes (Account Change 3001, Authentication 3002, API Activity 6003), every
object reachable from their attributes, and the scalar types, trimmed to what a validator reads
(attribute type, requirement, array-ness, profile, enum values with captions, sibling; object
constraints; type bases, regex, max_len, range, values). Descriptions are dropped.

usage: scripts/ocsf-extract.py COMPILED.json OBJECTS_DIR [OUT.json]
  COMPILED.json  the schema compiled by the `ocsf-lib` package (ocsf-1.3.0-compiled.json)
  OBJECTS_DIR    the schema's raw objects/*.json: the compiled document loses their
                 constraints (at_least_one, just_one), so they are read from there, following
                 `extends` the way the schema inherits them
  OUT.json       default tests/ocsf/schema-1.3.0.json

The output is deterministic (sorted keys), so a re-run on the same input changes nothing.
"""
import glob
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
CLASS_UIDS = (3001, 3002, 6003)

# Attributes an event class defines itself although a profile adds them too. The raw class
# files of OCSF 1.3.0 mark them `"profile": null` (events/iam/authentication.json and
# events/iam/account_change.json: `actor`; events/application/api.json: `api`); the compiled
# document loses that mark and lists them under the profile, which would make them undefined
# (or not required) in a record that declares no profile.
CLASS_OWNED = {
    'authentication': ['actor'],
    'account_change': ['actor'],
    'api_activity': ['api'],
}


def attribute(a, types):
    out = {
        'type': a['type'],
        'requirement': a.get('requirement') or 'optional',
        'is_array': bool(a.get('is_array')),
    }
    if a.get('profile'):
        out['profile'] = a['profile']
    if a.get('sibling'):
        out['sibling'] = a['sibling']
    if a.get('enum'):
        out['enum'] = {k: v.get('caption') for k, v in a['enum'].items()}
    if a['type'] not in types and a['type'] != 'object':
        out['object_type'] = a['type']
    return out


def raw_constraints(raw, name, compiled):
    """The object's own constraints, else those of the nearest ancestor that has some."""
    seen = set()
    n = name
    while n in raw and n not in seen:
        seen.add(n)
        if raw[n].get('constraints'):
            return raw[n]['constraints']
        n = raw[n].get('extends')
    return compiled or None


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    compiled_path, objects_dir = argv[1], argv[2]
    out_path = argv[3] if len(argv) == 4 else os.path.join(ROOT, 'tests', 'ocsf', 'schema-1.3.0.json')
    with open(compiled_path, encoding='utf-8') as f:
        d = json.load(f)
    raw = {}
    for p in glob.glob(os.path.join(objects_dir, '*.json')):
        with open(p, encoding='utf-8') as f:
            r = json.load(f)
        raw[r['name']] = r
    types = d['types']

    classes = {}
    pending = []
    for name, c in d['classes'].items():
        if c.get('uid') not in CLASS_UIDS:
            continue
        attrs = {n: attribute(a, types) for n, a in c['attributes'].items()}
        for n in CLASS_OWNED.get(name, []):
            attrs[n].pop('profile', None)
        classes[str(c['uid'])] = {
            'name': name,
            'caption': c['caption'],
            'category': c['category'],
            'constraints': c.get('constraints') or None,
            'attributes': attrs,
        }
        pending += [a['object_type'] for a in attrs.values() if 'object_type' in a]
    missing = set(CLASS_UIDS) - {int(u) for u in classes}
    if missing:
        sys.exit(f'classes not in the compiled schema: {sorted(missing)}')

    objects = {}
    while pending:
        name = pending.pop()
        if name in objects:
            continue
        o = d['objects'][name]
        attrs = {n: attribute(a, types) for n, a in o['attributes'].items()}
        objects[name] = {
            'caption': o['caption'],
            'constraints': raw_constraints(raw, name, o.get('constraints')),
            'attributes': attrs,
        }
        pending += [a['object_type'] for a in attrs.values() if 'object_type' in a]

    keep = ('type', 'regex', 'max_len', 'range', 'values')
    out = {
        'version': d['version'],
        'source': 'OCSF schema ' + d['version'] + ' (ocsf/ocsf-schema, Apache-2.0), compiled by '
                  'ocsf-lib; extracted by scripts/ocsf-extract.py',
        'classes': classes,
        'objects': objects,
        'types': {t: {k: v[k] for k in keep if v.get(k) is not None} for t, v in types.items()},
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, 'w', encoding='utf-8') as f:
        json.dump(out, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write('\n')
    print(f'{out_path}: {len(classes)} classes, {len(objects)} objects, {len(out["types"])} types')


if __name__ == '__main__':
    main(sys.argv)
