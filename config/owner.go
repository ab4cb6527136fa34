package config

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// resolveOwner fills UID, GID and Groups from User and Group: numeric
// ids, or names looked up in the system's user and group databases.
// Without --user and --group the workers run as the master does (-1).
func (c *Config) resolveOwner() error {
	c.UID, c.GID, c.Groups = -1, -1, nil
	if c.User == "" && c.Group == "" {
		return nil
	}
	if c.User != "" {
		u, known, err := lookupUser(c.User)
		if err != nil {
			return fmt.Errorf("--user: %w", err)
		}
		c.UID, _ = strconv.Atoi(u.Uid)
		c.GID, _ = strconv.Atoi(u.Gid) // its primary group, unless --group says otherwise
		var ids []string
		if known {
			if ids, err = u.GroupIds(); err != nil {
				return fmt.Errorf("--user: the groups of %s: %w", u.Username, err)
			}
		}
		for _, id := range ids {
			if n, err := strconv.Atoi(id); err == nil {
				c.Groups = append(c.Groups, n)
			}
		}
	} else {
		c.UID = os.Getuid()
	}
	if c.Group != "" {
		g, err := lookupGroup(c.Group)
		if err != nil {
			return fmt.Errorf("--group: %w", err)
		}
		c.GID, _ = strconv.Atoi(g.Gid)
	}
	return nil
}

// lookupUser finds a user by name or numeric id; known says the user is
// in the user database. A numeric id that is in none is still valid, as
// gunicorn takes it, with gorn's group.
func lookupUser(s string) (u *user.User, known bool, err error) {
	if _, err := strconv.ParseUint(s, 10, 31); err == nil {
		if u, err := user.LookupId(s); err == nil {
			return u, true, nil
		}
		return &user.User{Uid: s, Gid: strconv.Itoa(os.Getgid()), Username: s}, false, nil
	}
	if u, err = user.Lookup(s); err != nil {
		return nil, false, fmt.Errorf("no user %q", s)
	}
	return u, true, nil
}

// lookupGroup finds a group by name or numeric id.
func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.ParseUint(s, 10, 31); err == nil {
		return &user.Group{Gid: s, Name: s}, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return nil, fmt.Errorf("no group %q", s)
	}
	return g, nil
}

// ParseUmask reads --umask as gunicorn does (Python's int(value, 0)):
// decimal, 0o/0x/0b-prefixed, or octal with a leading 0 ("022"), as umask
// values are written.
func ParseUmask(s string) (int, error) {
	n, err := strconv.ParseInt(s, 0, 32)
	if err != nil || n < 0 || n > 0o777 {
		return 0, fmt.Errorf("--umask wants a mode such as 0o027 or 022, not %q", s)
	}
	return int(n), nil
}
